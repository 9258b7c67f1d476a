"""The regularisers' ablation on the quality bench, at equal wall-clock (docs/quality.md, "Ablation").

    python scripts/ablation.py --sets digits,faces --seeds 0,1,2 --out ablation.jsonl
    python scripts/ablation.py --table ablation.jsonl     # the docs' table from those lines
    python scripts/ablation.py --speed 64 --rounds 3 --candidates sn+hinge+r1 --out speed.jsonl

For each set: first every candidate's step time relative to the baseline's (the `dcgan` preset with all of
them off, as it was before this ablation), measured in
this process on the set's batch shape, interleaved (baseline, candidate, baseline, ...), medians over
ROUNDS rounds of STEPS_TIMED steps; a candidate then trains steps = baseline steps x (baseline step time /
its step time), so all get the baseline's wall-clock whatever else the machine runs. Then per seed: the
plain-Keras reference once, each candidate trained by the bench's own functions (`our_config`,
`train_ours`, `score`), FD ratio to the reference, precision and recall. One JSON line per result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

# name -> TrainConfig overrides on the dcgan preset, each from all of them off ("baseline": the preset), so
# the table means the same whatever the preset's defaults become.
OFF = dict(loss="nonsaturating", spectral_norm=False, r1_gamma=0.0, r1_interval=16, bcr=0.0, d_norm="batch")
CANDIDATES = {name: {**OFF, **options} for name, options in {
    "baseline": {},
    "hinge": dict(loss="hinge"),
    "sn": dict(spectral_norm=True),
    "r1": dict(r1_gamma=1.0, r1_interval=16),
    "bcr": dict(bcr=10.0),
    "ttur": dict(lr_g=1e-4, lr_d=4e-4),
    "sn+hinge": dict(spectral_norm=True, loss="hinge"),
    "sn+hinge+r1": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0, r1_interval=16),
    "sn+hinge+r1g3": dict(spectral_norm=True, loss="hinge", r1_gamma=3.0, r1_interval=16),
    # D without batch norm (--d-norm none), as SNGAN's: a gradient penalty through batch statistics is not the
    # penalty of one image's gradient (Gulrajani et al. 2017), and spectral norm then bounds D
    "sn+hinge-bn": dict(spectral_norm=True, loss="hinge", d_norm="none"),
    "sn+hinge+r1-bn": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0, r1_interval=16, d_norm="none"),
    "sn+hinge+r1-bn lr_g 2e-4": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0, r1_interval=16, d_norm="none",
                                     lr_g=2e-4),
    "sn+hinge+r1g10-bn": dict(spectral_norm=True, loss="hinge", r1_gamma=10.0, r1_interval=16, d_norm="none"),
    "sn+hinge+r1-bn lr_g 2e-4 ada_target 0.4": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0, r1_interval=16,
                                                    d_norm="none", lr_g=2e-4, ada_target=0.4),
    "sn+hinge+r1-bn lr_g 2e-4 ada_kimg 20": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0, r1_interval=16,
                                                 d_norm="none", lr_g=2e-4, ada_kimg=20.0),
    "sn+hinge+r1-bn lr_g 2e-4 ada_kimg 20 ndf 32": dict(spectral_norm=True, loss="hinge", r1_gamma=1.0,
                                                        r1_interval=16, d_norm="none", lr_g=2e-4, ada_kimg=20.0,
                                                        d_filters=32),
    "sn+r1": dict(spectral_norm=True, r1_gamma=1.0, r1_interval=16),
    "hinge+r1": dict(loss="hinge", r1_gamma=1.0, r1_interval=16),
}.items()}
ROUNDS, STEPS_TIMED = 5, 8


def step_costs(make_cfg, batch, names, label: str, log) -> dict[str, float]:
    """{candidate: its step time / the baseline's} on `batch` (uint8), the configs from `make_cfg(name)`,
    interleaved in this process (baseline, candidate, ... per round), medians over ROUNDS."""
    import tensorflow as tf

    from dcgan_cli.gan.step import build_gan, make_train_step, resolve_precision

    precision = resolve_precision("auto")
    batch = tf.constant(batch)
    steps = {}
    for name in ["baseline", *names]:
        cfg = make_cfg(name)
        gan = build_gan(cfg, precision)
        steps[name] = make_train_step(cfg, gan, tf.distribute.get_strategy(), precision)
        steps[name](batch)  # trace
    times = {n: [] for n in steps}
    for _ in range(ROUNDS):
        for name in ["baseline", *names]:
            t = time.perf_counter()
            for _ in range(STEPS_TIMED):
                out = steps[name](batch)
            float(out["d_loss"])
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["baseline"])
    costs = {n: statistics.median(t) / base for n, t in times.items()}
    log({"kind": "step_cost", "set": label, "precision": precision, **costs})
    return costs


def set_costs(qs, names, log) -> dict[str, float]:
    """Step costs on a quality set's own batch shape (32x32 grey, its batch size)."""
    from dcgan_cli.bench.quality import our_config

    return step_costs(lambda name: our_config(qs, 0, 10, Path("."), batch_size=qs.batch_size, augment="none",
                                              **CANDIDATES[name]),
                      qs.images[: qs.batch_size], names, qs.name, log)


def speed_costs(size: int, names, log, batch_size: int = 128) -> dict[str, float]:
    """Step costs on the speed benchmark's shape (`dcgan bench --parts step`: size x size x 3, batch 128)."""
    import numpy as np

    from dcgan_cli.config import preset

    batch = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    return step_costs(lambda name: preset("dcgan", image_size=size, channels=3, batch_size=batch_size,
                                          strategy="default", augment="none", **CANDIDATES[name]),
                      batch, names, f"speed{size}", log)


def table(path: str) -> str:
    """The markdown table of an ablation's JSON lines: per set and candidate, the newest step cost, each seed's
    steps at equal wall-clock (from the cost measured when it ran), FD ratio to the reference (mean +- sd over seeds, and each seed's), precision and recall."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    costs: dict = {}  # per set, each candidate's newest measured cost
    for r in rows:
        if r["kind"] == "step_cost":
            costs.setdefault(r["set"], {}).update(r)
    out = ["| set | candidate | step cost | steps | FD ratio (mean +- sd) | per seed | P | R |",
           "|---|---|---|---|---|---|---|---|"]
    results = [r for r in rows if r["kind"] == "result"]
    for set_name in dict.fromkeys(r["set"] for r in results):
        for name in dict.fromkeys(r["candidate"] for r in results if r["set"] == set_name):
            got = sorted((r for r in results if r["set"] == set_name and r["candidate"] == name),
                         key=lambda r: r["seed"])
            ratios = [r["fd_ratio"] for r in got]
            sd = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
            steps = "/".join(str(r["steps"]) for r in got)
            out.append(f"| {set_name} | {name} | {costs[set_name].get(name, float('nan')):.2f} | {steps} | "
                       f"{statistics.mean(ratios):.3f} +- {sd:.3f} | "
                       f"{' / '.join(f'{x:.2f}' for x in ratios)} (seeds {','.join(str(r['seed']) for r in got)}) | "
                       f"{statistics.mean(r['precision'] for r in got):.3f} | "
                       f"{statistics.mean(r['recall'] for r in got):.3f} |")
    return "\n".join(out)


def main() -> None:
    from dcgan_cli.bench.quality import (our_config, prepare_reals, quality_set, sample, score, train_ours,
                                         train_reference)

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="digits")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--out", default="ablation.jsonl")
    ap.add_argument("--table", metavar="JSONL", help="print the markdown table of these results and exit")
    ap.add_argument("--speed", type=int, metavar="SIZE", help="only the step costs at the speed benchmark's "
                    "shape (SIZE x SIZE x 3, batch 128), --rounds times, then exit")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    names = [n for n in a.candidates.split(",") if n != "baseline"]

    def log(row):
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as f:
            f.write(json.dumps(row) + "\n")

    if a.speed:
        for _ in range(a.rounds):
            speed_costs(a.speed, names, log)
        return
    done = [json.loads(line) for line in Path(a.out).read_text().splitlines()] if Path(a.out).exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in a.sets.split(","):
            qs = quality_set(set_name, Path(tmp))
            reals = prepare_reals(qs)
            costs = _known_costs(done, set_name, names) or set_costs(qs, names, log)
            for seed in [int(s) for s in a.seeds.split(",")]:
                # A rerun continues the file: the (deterministic) reference and the candidates already scored
                # for this set and seed are taken from it, not trained again.
                had = {r["candidate"]: r for r in done if r["kind"] == "result" and r["set"] == set_name
                       and r["seed"] == seed}
                todo = [n for n in ["baseline", *names] if n not in had]
                if not todo:
                    continue
                ref_fd = (next(iter(had.values()))["fd_reference"] if had else
                          score(sample(train_reference(qs.images, seed, qs.steps, batch_size=qs.batch_size)),
                                reals)["fd"])
                for name in todo:
                    steps = max(1, round(qs.steps / costs[name]))
                    cfg = our_config(qs, seed, steps, Path(tmp) / "runs" / name,
                                     batch_size=qs.batch_size, **CANDIDATES[name])
                    ours, _ = train_ours(cfg, Path(tmp) / "runs" / name / f"s{seed}")
                    s = score(sample(ours), reals)
                    log({"kind": "result", "set": set_name, "seed": seed, "candidate": name, "steps": steps,
                         "fd_ratio": s["fd"] / ref_fd, "precision": s["precision"], "recall": s["recall"],
                         "fd": s["fd"], "fd_reference": ref_fd})


def _known_costs(done: list, set_name: str, names: list) -> dict | None:
    """The newest step costs of `set_name` in an earlier run's lines, if they cover every candidate asked for."""
    rows = [r for r in done if r["kind"] == "step_cost" and r["set"] == set_name]
    return rows[-1] if rows and all(n in rows[-1] for n in names) else None

if __name__ == "__main__":
    main()
