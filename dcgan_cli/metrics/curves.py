"""Scores over training: `dcgan evaluate --run RUN --all-checkpoints` (or `--checkpoints N,M`).

Each kept checkpoint (RUN/checkpoints/'s, and RUN/best/'s) is scored
once with evaluate.evaluate_generator and its result cached as
RUN/eval-cache/NAME-KEY.json (NAME the checkpoint's). KEY hashes what decides the numbers: the
checkpoint's own .index file (it holds every tensor's CRC, so a checkpoint
rewritten after a rollback is a new one), the data's statistics key (its
shards, the extractor and its weights), and the evaluation options. Running
the command again scores only new checkpoints. The curve goes to RUN/eval.png
(FID, KID, precision/recall/density/coverage and IS over steps), written
atomically, and each newly scored checkpoint is appended to metrics.jsonl.
This module only scores: it reads runs through runs/ (layout, checkpoints) and never imports the trainer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from dcgan_cli.runs import checkpoints, layout
from dcgan_cli.errors import DcganError, UsageError
from dcgan_cli.fsutil import atomic_path, write_json

# With --eval-every-epochs the trainer keeps at least this many checkpoints, so a curve exists.
EVAL_KEEP_CHECKPOINTS = 10
_PANELS = (("fid", "FID"), ("kid", "KID"), ("precision_k3", "precision (k=3)"), ("recall_k3", "recall (k=3)"),
           ("density_k3", "density (k=3)"), ("coverage_k3", "coverage (k=3)"), ("is", "IS"))


def parse_checkpoints(text: str) -> tuple[int, ...]:
    """'5,10,20' -> (5, 10, 20): checkpoint numbers (the step a checkpoint is named after)."""
    try:
        steps = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise UsageError(f"--checkpoints takes checkpoint numbers such as 500,1000 (the STEP of "
                         f"{checkpoints.checkpoint_name('STEP')}), "
                         f"got {text!r}", "--checkpoints") from None
    if not steps:
        raise UsageError("--checkpoints needs at least one checkpoint number", "--checkpoints")
    return steps


def kept_checkpoints(run_dir: Path, steps: tuple[int, ...] | None = None) -> list[tuple[str, Path, bool]]:
    """[(label, checkpoint path, from best/)], oldest first: the kept ones (or those numbered `steps`), then best/'s."""
    found = [Path(p) for p in checkpoints.checkpoint_paths(run_dir / layout.CKPT_DIR)]
    by_step = {checkpoints.checkpoint_step(p): p for p in found}
    if steps is not None:
        unknown = [s for s in steps if s not in by_step]
        if unknown:
            raise DcganError(f"{run_dir} keeps no checkpoint {', '.join(map(str, unknown))}; it keeps "
                             f"{', '.join(map(str, sorted(by_step))) or 'none'}")
        found = [by_step[s] for s in steps]
    chosen = [(p.name, p, False) for p in found]
    best = checkpoints.checkpoint_paths(run_dir / layout.BEST_DIR)
    if best:
        chosen.append((f"best/{Path(best[-1]).name}", Path(best[-1]), True))
    if not chosen:
        raise DcganError(f"{run_dir} has no checkpoint yet; train it first")
    return chosen


def _restore(run_dir: Path, path: Path, ema: bool):
    """The generator of exactly this checkpoint (stock layers, like generator_io.restore)."""
    import tensorflow as tf

    from dcgan_cli.gan.model import build_generator

    cfg = layout.load_config(run_dir)
    g = build_generator(cfg.image_size, cfg.channels, cfg.latent_dim, cfg.g_filters, cfg.init_std, fast=False,
                        activation=cfg.g_activation)
    use_ema = ema and cfg.ema > 0
    slot = checkpoints.EMA_SLOT if use_ema else checkpoints.GENERATOR_SLOT
    try:
        tf.train.Checkpoint(**{slot: g}).restore(str(path)).expect_partial().assert_existing_objects_matched()
    except Exception as e:  # truncated or unreadable files: tf raises several types
        raise DcganError(f"checkpoint {path} could not be read ({type(e).__name__}); leave it out with "
                         f"--checkpoints") from None
    return g, use_ema


def _cache_file(run_dir: Path, label: str, path: Path, ident: str) -> Path:
    digest = hashlib.sha256((Path(str(path) + ".index").read_bytes()) + ident.encode()).hexdigest()[:16]
    return run_dir / layout.EVAL_CACHE_DIR / f"{label.replace('/', '-')}-{digest}.json"


def _read_entry(cache: Path, label: str, log: Callable[[str], None]) -> dict | None:
    """A cached score, or None (not scored yet, or damaged: then it is scored again and rewritten atomically)."""
    import math

    if not cache.is_file():
        return None
    try:
        entry = json.loads(cache.read_text())
        ok = (isinstance(entry, dict) and entry.get("checkpoint") == label and type(entry.get("step")) is int
              and all(v is None or isinstance(v, (int, float)) and math.isfinite(v)
                      for k, v in entry.items() if k in dict(_PANELS)))
    except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        ok = False
    if not ok:
        log(f"Warning: the cached score {cache} is damaged; scoring {label} again")
        return None
    return entry


def evaluate_checkpoints(run_dir: Path, data: Path | None, opts, *, ema: bool = True,
                         steps: tuple[int, ...] | None = None, log: Callable[[str], None] = print) -> dict:
    """Score each chosen checkpoint once (cached), write RUN/eval.png; returns {"rows": [...], "plot": path}."""
    from dcgan_cli.metrics.evaluate import append_to_metrics, evaluate_generator, plan, stats_cache_key
    from dcgan_cli.metrics import extractors
    from dcgan_cli.data.shards import load_manifest

    run_dir = Path(run_dir)
    chosen = kept_checkpoints(run_dir, steps)
    cfg = layout.load_config(run_dir)
    data = Path(data or cfg.data)
    manifest = load_manifest(data)
    n_real = plan(opts, manifest["count"])[2]  # refuses impossible options before any checkpoint loads
    extractor = extractors.get_extractor(opts.extractor, opts.weights, opts.batch_size)
    ident = json.dumps({"data": stats_cache_key(manifest, extractor.key, n_real), "ema": ema,
                        "opts": {**asdict(opts), "weights": None}}, sort_keys=True)
    rows = []
    for label, path, best in chosen:
        cache = _cache_file(run_dir, label, path, ident)
        entry = _read_entry(cache, label, log)
        if entry is not None:
            rows.append({**entry, "cached": True})
            continue
        log(f"scoring {label}")
        generator, use_ema = _restore(run_dir, path, ema)
        result = {"run": str(run_dir), "checkpoint": label, "step": int(path.name.split("-")[1]), "best": best,
                  "generator": "ema" if use_ema else "raw", **evaluate_generator(generator, data, opts, log=log)}
        write_json(cache, result)
        append_to_metrics(run_dir, result)
        rows.append({**result, "cached": False})
    plot = run_dir / layout.EVAL_PLOT_FILE
    plot_curves([r for r in rows if not r["best"]], plot, title=f"{run_dir.name} ({opts.extractor})")
    return {"run": str(run_dir), "rows": rows, "plot": str(plot)}


def curve_target(run: Path | None, generator: Path | None, data: Path | None, opts, *, all_checkpoints: bool,
                 checkpoints: str | None, ema: bool = True, runs_dir: Path = Path("runs"),
                 log: Callable[[str], None] = print) -> dict:
    """What `dcgan evaluate --all-checkpoints` / `--checkpoints N,M` does (checks its options first)."""
    if all_checkpoints and checkpoints:
        raise UsageError("--all-checkpoints and --checkpoints choose the same thing; give one", "--checkpoints")
    if generator is not None:
        raise UsageError("a curve scores a run's checkpoints: pass --run, not --generator", "--generator")
    steps = parse_checkpoints(checkpoints) if checkpoints is not None else None  # "" is refused, not ignored
    if run is None:
        run = layout.latest_run(runs_dir)
        log(f"Using the newest run: {run}")
    return evaluate_checkpoints(run, data, opts, ema=ema, steps=steps, log=log)


def plot_curves(rows: list[dict], out: Path, title: str = "") -> None:
    """One panel per score present, over steps; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, name) for k, name in _PANELS if any(r.get(k) is not None for r in rows)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3), dpi=100, squeeze=False)
    for ax, (key, name) in zip(axes[0], panels):
        pts = sorted((r["step"], r[key]) for r in rows if r.get(key) is not None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_curve(result: dict) -> str:
    """The table: one row per checkpoint, one column per score."""
    rows = result["rows"]
    cols = [(k, name.split(" ")[0]) for k, name in _PANELS if any(r.get(k) is not None for r in rows)]
    head = ["checkpoint", "step"] + [c[1] for c in cols] + [""]
    body = [[r["checkpoint"], str(r["step"])] + [f"{r[k]:.4g}" if r.get(k) is not None else "-" for k, _ in cols]
            + ["(cached)" if r["cached"] else ""] for r in rows]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = ["  ".join(x[i].ljust(widths[i]) for i in range(len(head))).rstrip() for x in [head] + body]
    return "\n".join(lines + [f"curve: {result['plot']}"])
