"""`dcgan evaluate --all-checkpoints` / `--checkpoints`: each kept checkpoint scored once, cached, drawn."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from helpers import copy_run, ok, one_line_error
from dcgan_cli.cli import app

runner = CliRunner()
ARGS = ["--extractor", "tiny-random", "--samples", "30", "--metrics", "kid,prdc", "--batch-size", "16"]


@pytest.fixture()
def run(tiny_run, data16, tmp_path):
    """The shared tiny run (ckpt-3, ckpt-6) with its own copy of the data (evaluation caches beside it)."""
    data = shutil.copytree(data16, tmp_path / "faces-16", ignore=shutil.ignore_patterns("eval-stats-*"))
    return copy_run(tiny_run, tmp_path / "runs", data=data)


@pytest.mark.slow
@pytest.mark.subprocess
def test_all_checkpoints_scores_each_once_writes_the_curve_and_caches(run):
    from dcgan_cli.metrics import curves
    from dcgan_cli.metrics.evaluate import EvalOptions
    from dcgan_cli.metrics import extractors

    r = ok(runner.invoke(app, ["evaluate", "--run", str(run), "--all-checkpoints", *ARGS]))
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["checkpoint", "step", "KID", "precision"]
    assert [ln.split()[:2] for ln in lines[1:3]] == [["ckpt-3", "3"], ["ckpt-6", "6"]]
    assert "(cached)" not in r.stdout and lines[-1] == f"curve: {run / 'eval.png'}"
    # eval.png is a real PNG that loads without this package.
    size = subprocess.run([sys.executable, "-c", "from PIL import Image; import sys; "
                           "print(Image.open(sys.argv[1]).size)", str(run / "eval.png")],
                          capture_output=True, text=True, check=True).stdout
    assert eval(size)[0] > 600  # a panel per score: KID and the four of prdc
    assert len(list((run / "eval-cache").glob("ckpt-*.json"))) == 2
    evals = [json.loads(x)["eval"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["checkpoint"] for e in evals] == ["ckpt-3", "ckpt-6"]
    assert all(0 <= e["precision_k3"] <= 1 and e["kid_subset_size"] == 24 for e in evals)

    # Again: nothing is embedded, nothing appended; the numbers are the cached ones.
    ex = extractors.get_extractor("tiny-random", None, 16)
    seen = ex.images_seen
    opts = EvalOptions(samples=30, metrics=("kid", "prdc"), extractor="tiny-random", batch_size=16)
    again = curves.evaluate_checkpoints(run, None, opts, log=lambda m: None)
    assert ex.images_seen == seen and all(row["cached"] for row in again["rows"])
    assert [row["kid"] for row in again["rows"]] == [e["kid"] for e in evals]
    assert (run / "metrics.jsonl").read_text().count('"eval"') == 2

    # A checkpoint not scored yet (here: its cache entry gone) is the only one embedded.
    next((run / "eval-cache").glob("ckpt-3-*.json")).unlink()
    third = curves.evaluate_checkpoints(run, None, opts, log=lambda m: None)
    assert [row["cached"] for row in third["rows"]] == [False, True]
    assert ex.images_seen == seen + 30 and third["rows"][0]["kid"] == evals[0]["kid"]  # same seed, same number

    # A damaged entry (garbage, an empty file) is scored again and rewritten, not fatal.
    entry = next((run / "eval-cache").glob("ckpt-6-*.json"))
    entry.write_text("garbage{")
    warned = []
    fourth = curves.evaluate_checkpoints(run, None, opts, log=warned.append)
    assert [row["cached"] for row in fourth["rows"]] == [True, False] and fourth["rows"][1]["kid"] == evals[1]["kid"]
    assert json.loads(entry.read_text())["checkpoint"] == "ckpt-6" and any("damaged" in w for w in warned), warned

    # Other options are other numbers: not taken from the cache.
    r = ok(runner.invoke(app, ["evaluate", "--run", str(run), "--checkpoints", "6", *ARGS[:-2], "--seed", "1"]))
    assert [ln.split()[0] for ln in r.stdout.splitlines()[1:-1]] == ["ckpt-6"] and "(cached)" not in r.stdout


def test_curve_options_are_checked_in_one_line(run):
    one_line_error(runner.invoke(app, ["evaluate", "--run", str(run), "--checkpoints", "4", *ARGS]),
                   "keeps no checkpoint 4", "3, 6")
    one_line_error(runner.invoke(app, ["evaluate", "--run", str(run), "--checkpoints", "x", *ARGS]),
                   "--checkpoints", code=2)
    one_line_error(runner.invoke(app, ["evaluate", "--generator", str(run / "generator.keras"),
                                       "--all-checkpoints", *ARGS]), "--run", code=2)
    assert not (run / "eval.png").exists() and not (run / "eval-cache").exists()


def test_eval_every_keeps_enough_checkpoints_for_a_curve(data16, tmp_path):
    from helpers import tiny_config
    from dcgan_cli.metrics.curves import EVAL_KEEP_CHECKPOINTS
    from dcgan_cli.training.loop import checkpoints_to_keep

    assert checkpoints_to_keep(tiny_config(data16, tmp_path)) == 3  # off: --keep-checkpoints as given
    assert checkpoints_to_keep(tiny_config(data16, tmp_path, eval_every_epochs=1)) == EVAL_KEEP_CHECKPOINTS
    assert checkpoints_to_keep(tiny_config(data16, tmp_path, eval_every_epochs=1, keep_checkpoints=20)) == 20


def test_best_is_scored_beside_the_kept_checkpoints(run):
    from dcgan_cli.runs import checkpoints
    from dcgan_cli.runs import layout
    from dcgan_cli.metrics.curves import kept_checkpoints

    best = run / layout.BEST_DIR
    best.mkdir()
    for f in (run / "checkpoints").glob("ckpt-6.*"):
        shutil.copy(f, best / f.name)
    checkpoints.write_checkpoint_index(best, [str(best / "ckpt-6")])
    chosen = kept_checkpoints(run)
    assert [(label, p.parent.name, b) for label, p, b in chosen] == [
        ("ckpt-3", "checkpoints", False), ("ckpt-6", "checkpoints", False), ("best/ckpt-6", "best", True)]
    assert [label for label, _, _ in kept_checkpoints(run, (3,))] == ["ckpt-3", "best/ckpt-6"]
