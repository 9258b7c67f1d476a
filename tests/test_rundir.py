"""The run directory: restore() and its fall-back, the resume rule, and what the trainer enforces itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import one_line_error, tiny_config
from dcgan_cli.gan import generator_io
from dcgan_cli.runs import layout
from dcgan_cli.runs import lifecycle
from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError, UsageError

runner = CliRunner()


@pytest.fixture()
def two_epoch_run(tiny_run_copy):
    """A private copy of the shared finished tiny run (conftest.tiny_run): EMA on, checkpoints ckpt-3 and ckpt-6."""
    return tiny_run_copy


def _corrupt_newest(run: Path) -> str:
    import tensorflow as tf

    newest = tf.train.latest_checkpoint(str(run / layout.CKPT_DIR))
    data_file = Path(newest + ".data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 3])  # truncated by a crash
    return Path(newest).name


def test_restore_reports_the_checkpoint_it_really_used_after_a_corrupt_newest_one(two_epoch_run):
    restored = generator_io.restore(two_epoch_run)
    assert restored.checkpoint_name == "ckpt-6" and restored.step == 6 and restored.ema

    assert _corrupt_newest(two_epoch_run) == "ckpt-6"
    warnings = []
    restored = generator_io.restore(two_epoch_run, warn=warnings.append)
    assert restored.checkpoint_name == "ckpt-3" and restored.step == 3
    assert len(warnings) == 1 and "ckpt-6 could not be read" in warnings[0]
    assert "at step 3" in restored.describe()

    # `dcgan evaluate --run` names the checkpoint it scored, not the newest one on disk.
    r = runner.invoke(app, ["evaluate", "--run", str(two_epoch_run), "--extractor", "tiny-random",
                            "--samples", "20", "--metrics", "kid", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["checkpoint"] == "ckpt-3"
    assert "ckpt-6 could not be read" in r.stderr


def test_restore_of_a_run_whose_checkpoints_are_all_damaged_is_one_error(two_epoch_run):
    import tensorflow as tf

    for path in tf.train.get_checkpoint_state(str(two_epoch_run / layout.CKPT_DIR)).all_model_checkpoint_paths:
        Path(path + ".data-00000-of-00001").write_bytes(b"")
    with pytest.raises(DcganError, match="no checkpoint in .* could be read.*damaged"):
        generator_io.restore(two_epoch_run)
    with pytest.raises(DcganError, match="no best checkpoint.*--eval-every"):
        generator_io.restore(two_epoch_run, best=True)


def test_the_trainer_enforces_the_resume_rule_for_every_caller(two_epoch_run):
    from dcgan_cli.training.loop import train

    saved = layout.load_config(two_epoch_run)
    # A Python caller (or bench) cannot slip a different model past --resume.
    with pytest.raises(DcganError, match="cannot change --g-filters, --label-smoothing when resuming"):
        train(saved.replace(epochs=3, label_smoothing=0.2, g_filters=16), resume=two_epoch_run, quiet=True,
              log=lambda m: None)
    with pytest.raises(TypeError, match="resume names the run directory"):
        train(saved, resume=True, quiet=True, log=lambda m: None)
    assert layout.load_config(two_epoch_run) == saved, "a refused resume leaves the run as it was"
    # What may change does: epochs, checkpointing, precision...
    lifecycle.check_resume(two_epoch_run, saved.replace(epochs=9, checkpoint_every_steps=2, precision="bf16", data="moved",
                                                     lr_g=1e-5, lr_d=1e-5, beta1=0.0, beta2=0.9))
    assert layout.resume_config(two_epoch_run, epochs=4, lr_g=None).epochs == 4
    # The command line goes through the same rule.
    one_line_error(runner.invoke(app, ["train", "--resume", str(two_epoch_run), "--g-filters", "4", "--dry-run"]),
                   "cannot change --g-filters")


def test_the_trainer_checks_eval_every_before_writing_anything(data16, tmp_path):
    from dcgan_cli.training.loop import train

    cfg = tiny_config(data16, tmp_path / "runs", eval_every_epochs=1, strategy="multiworker")
    with pytest.raises(DcganError, match="not supported with several workers"):
        train(cfg, quiet=True, log=lambda m: None)
    assert not (tmp_path / "runs").exists()


def test_run_numbers_sort_and_the_newest_run_is_found(tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(DcganError, match="no training runs"):
        layout.latest_run(runs)
    first, second = layout.new_run_dir(runs, "a"), layout.new_run_dir(runs, "b")
    assert (first.name, second.name) == ("00000-a", "00001-b")
    for run in (first, second):
        layout.save_config(run, tiny_config("data", runs))
    # A run that died before its first checkpoint (bad data, a full disk) is never "the newest run".
    with pytest.raises(DcganError, match=r"no training runs with a checkpoint .*\(2 without a checkpoint yet\)"):
        layout.latest_run(runs)
    (first / layout.CKPT_DIR).mkdir()
    (first / layout.CKPT_DIR / "ckpt-3.index").write_bytes(b"x")
    assert layout.latest_run(runs) == first
    (second / layout.GENERATOR_FILE).write_bytes(b"x")  # a finished run
    assert layout.latest_run(runs) == second
    layout.new_run_dir(runs, "c")  # created, then failed: still not the newest
    assert layout.latest_run(runs) == second
    assert layout.run_of(second / layout.BEST_DIR / layout.GENERATOR_FILE) == second
    assert layout.run_of(tmp_path / "loose.keras") is None


# ----------------------------------------------------------------------------
# sampling.SampleRequest: the sample command's rules, without a model


def test_a_sample_request_resolves_its_seeds_and_defaults():
    from dcgan_cli.generate.sampling import SampleRequest

    req = SampleRequest(out=Path("o.png"), seed=5, n=3)
    assert list(req.seeds) == [5, 6, 7] and req.psi == 1.0
    walk = SampleRequest(out=Path("w.gif"), interpolate=3, seed_list="4,9,2", truncation=0.7)
    assert list(walk.seeds) == [4, 9, 2] and walk.frames_per_leg == 24 and walk.psi == 0.7
    assert len(SampleRequest(individual=Path("faces")).seeds) == 16


@pytest.mark.parametrize("kwargs, option", [
    (dict(out="o.png", run="r", generator="m.keras"), "--generator"),
    (dict(out="o.png", generator="m.keras", ema=False), "--no-ema"),
    (dict(out="o.png", seed=1, seed_list="1-3"), "--seeds"),
    (dict(out="o.png", seed_list="9-2"), "--seeds"),
    (dict(out="o.png", truncation=0.0), "--truncation"),
    (dict(out="o.png", frames=4), "--frames"),
    (dict(out="o.png", n=5, seed_list="0-9"), "-n"),
    (dict(out="o.bmp"), "OUT"),
    (dict(), "OUT"),
    (dict(out="w.gif", interpolate=3, nrow=2), "--nrow"),
    (dict(out="w.png", interpolate=3), "OUT"),
    (dict(out="w.gif", interpolate=3, seed_list="1-2"), "--seeds"),
    (dict(out="o.png", n=0), "-n"),
])
def test_a_contradictory_sample_request_names_the_option_at_fault(kwargs, option):
    from dcgan_cli.generate.sampling import SampleRequest

    kwargs = {k: Path(v) if k in ("out", "run", "generator") else v for k, v in kwargs.items()}
    with pytest.raises(UsageError) as err:
        SampleRequest(**kwargs)
    assert err.value.option == option
