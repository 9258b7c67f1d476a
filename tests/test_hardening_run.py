"""Issue 16, the run side: each hostile case a user can meet while training or sampling ends in one line,
and nothing good is lost (NaN recovery, locks, damaged checkpoint index, bad data, full and read-only
disks, absurd flags and config files, quiet overwrites).

Where a user meets a case on the command line, the test runs the real command: in this process through Typer's
runner (helpers.dcgan_here) where the command is refused, in a subprocess (marked so) where a run goes on
training, resumes, or another process holds it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import dcgan, dcgan_here, one_line_error, snapshot, tiny_config, write_faces
from dcgan_cli.runs import checkpoints
from dcgan_cli.gan import generator_io
from dcgan_cli.runs import layout
from dcgan_cli.errors import DcganError

QUIET = lambda m: None  # noqa: E731


@pytest.fixture()
def run(tiny_run_copy):
    """A private copy of the shared finished tiny run (conftest.tiny_run: ckpt-3 and ckpt-6), to damage."""
    return tiny_run_copy


def ckpt_step(run_dir: Path) -> int:
    return generator_io.restore(run_dir).step


# ----------------------------------------------------------------------------
# 1. NaN recovery that can be followed


@pytest.mark.slow
@pytest.mark.subprocess
def test_after_a_nan_the_printed_command_recovers_and_the_change_is_recorded(run):
    before = snapshot(run / layout.CKPT_DIR)
    # --checkpoint-every 1: before, the exploding (finite, ~1e30) weights were saved, and every resume NaN'd again.
    r = dcgan("train", "--resume", run, "--epochs", "4", "--lr-d", "1e30", "--lr-g", "1e30", "--checkpoint-every-steps",
              "1", "--quiet")
    line = one_line_error(r)
    assert re.search(r"loss became (NaN|Inf) at step \d+|not checkpointing step \d+: .*exploding", line), line
    assert "the last good checkpoint, ckpt-6, is kept" in line
    command = re.search(r"dcgan train --resume \S+ --lr-d \S+ --lr-g \S+", line).group(0)
    assert command == f"dcgan train --resume {run} --lr-d 0.0002 --lr-g 0.0002"
    assert snapshot(run / layout.CKPT_DIR) == before, "a NaN never writes or rotates a checkpoint"

    # Following the advice works: the learning rates may change on resume.
    r = dcgan(*command.split()[1:], "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "lr-g 1e+30 -> 0.0002" in r.stdout + r.stderr
    assert ckpt_step(run) == 9
    history = layout.read_history(run)
    assert [e["event"] for e in history] == ["start", "resume", "resume"]
    assert history[-1]["changed"]["lr_g"] == [1e30, 0.0002] and history[-1]["step"] == 6
    assert layout.load_config(run).lr_d == 0.0002


@pytest.mark.slow
def test_a_nan_before_any_checkpoint_says_to_start_again_and_leaves_no_empty_run(data16, tmp_path):
    runs = tmp_path / "runs"
    r = dcgan_here("train", "--data", data16, "--runs-dir", runs, "--batch-size", "8", "--g-filters", "8",
                   "--d-filters", "8", "--latent-dim", "8", "--precision", "fp32", "--strategy", "default",
                   "--steps-per-epoch", "3", "--epochs", "1", "--lr-d", "1e30", "--lr-g", "1e30", "--quiet")
    line = one_line_error(r)
    assert "no checkpoint was written before it, so there is nothing to resume: start a new run" in line
    assert "--lr-d 0.0002 --lr-g 0.0002" in line and "--resume" not in line
    assert not list(runs.glob("*")), "the failed run's empty folder is removed"


def test_weights_past_the_bound_are_never_checkpointed(run):
    import tensorflow as tf

    from dcgan_cli.runs.checkpoints import WEIGHT_LIMIT, weight_problem
    from dcgan_cli.gan.step import build_gan

    gan = build_gan(layout.load_config(run))
    assert weight_problem([gan.generator, gan.discriminator]) is None
    kernel = gan.generator.trainable_variables[0]
    kernel.assign(tf.fill(kernel.shape, WEIGHT_LIMIT * 10))
    assert "exploding" in weight_problem([gan.generator])
    kernel.assign(tf.fill(kernel.shape, float("nan")))
    assert "is not finite" in weight_problem([gan.generator])


# ----------------------------------------------------------------------------
# 2. One writer per run


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_second_writer_of_a_run_is_refused_by_pid_and_a_dead_holders_lock_is_taken_over(run):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dcgan_cli.runs.layout import lock_run; "
                               f"lock = lock_run({str(run)!r}); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        r = dcgan("train", "--resume", run, "--epochs", "3", "--quiet")
        line = one_line_error(r)
        assert f"{run} is in use by another dcgan process writing this run (PID {holder.pid})" in line
        assert f"kill {holder.pid}" in line
        assert snapshot(run) == before, "the refused second writer touched nothing"
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the lock file stays, naming a dead PID
        holder.wait()
    assert (run / ".dcgan.lock").read_text().split()[0] == str(holder.pid)
    r = dcgan("train", "--resume", run, "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert ckpt_step(run) == 9 and not (run / ".dcgan.lock").exists()


# ----------------------------------------------------------------------------
# 3. A damaged checkpoint index does not hide good checkpoints


@pytest.mark.parametrize("content, problem", [
    (b"", "is unreadable"),
    (b"\n\n", "is unreadable"),
    (b"\xff\xfe\x00garbage", "is unreadable"),
    (b'model_checkpoint_path: "ckpt-20"\nall_model_checkpoint_paths: "ckpt-20"\n', "names ckpt-20, which is not"),
    (None, "is missing"),
])
def test_checkpoints_are_found_from_their_files_when_the_index_is_damaged(run, content, problem):
    index = run / layout.CKPT_DIR / "checkpoint"
    index.unlink() if content is None else index.write_bytes(content)
    warnings = []
    paths = checkpoints.checkpoint_paths(run / layout.CKPT_DIR, warnings.append)
    assert [Path(p).name for p in paths] == ["ckpt-3", "ckpt-6"]
    assert len(warnings) == 1 and problem in warnings[0] and "ckpt-3, ckpt-6" in warnings[0]
    assert generator_io.restore(run).step == 6


@pytest.mark.slow
@pytest.mark.subprocess
def test_sample_and_resume_go_on_past_a_garbage_index_and_a_kills_temp_folder(run, tmp_path):
    ckpts = run / layout.CKPT_DIR
    (ckpts / "checkpoint").write_bytes(b"\xff\xfe\x00 power cut")
    (ckpts / "ckpt-7_temp").mkdir()
    (ckpts / "ckpt-7_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")

    r = dcgan("sample", "--run", run, "-n", "2", tmp_path / "out.png")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "checkpoint is unreadable (UnicodeDecodeError); using the checkpoints found on disk" in r.stderr
    assert "at step 6" in r.stderr and (tmp_path / "out.png").stat().st_size > 0
    assert (ckpts / "ckpt-7_temp").exists(), "sample only reads a run"

    r = dcgan("train", "--resume", run, "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rebuilt it from the checkpoints on disk (ckpt-3, ckpt-6)" in r.stdout + r.stderr
    assert "Resumed from" in r.stdout and "step 6" in r.stdout
    assert not (ckpts / "ckpt-7_temp").exists()
    assert [Path(p).name for p in checkpoints.checkpoint_paths(ckpts)] == ["ckpt-3", "ckpt-6", "ckpt-9"]


# ----------------------------------------------------------------------------
# 4. The data is checked before a run directory exists


@pytest.fixture()
def data_copy(data16, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data16, copy)
    (copy / ".verified.json").unlink(missing_ok=True)
    return copy


def _shard(data: Path) -> Path:
    return data / json.loads((data / "manifest.json").read_text())["shards"][0]["file"]


def _train_new(data, runs, verify=False):
    from dcgan_cli.training.loop import train

    return train(tiny_config(data, runs, epochs=1), quiet=True, log=QUIET, verify_data=verify)


def test_a_truncated_shard_is_refused_before_any_run_dir_exists(data_copy, tmp_path):
    shard = _shard(data_copy)
    shard.write_bytes(shard.read_bytes()[:-100])
    runs = tmp_path / "runs"
    r = dcgan_here("train", "--data", data_copy, "--runs-dir", runs, "--batch-size", "8", "--quiet")
    line = one_line_error(r)
    assert f"shard {shard} is" in line and "truncated" in line and "dcgan preprocess" in line
    assert not runs.exists(), "no run directory for a run that cannot start"


def test_a_bit_flip_an_edited_count_or_an_edited_hash_is_caught(data_copy, tmp_path):
    shard, manifest_path = _shard(data_copy), data_copy / "manifest.json"
    good_manifest, good_shard = manifest_path.read_text(), shard.read_bytes()

    flipped = bytearray(good_shard)
    flipped[len(flipped) // 2] ^= 0xFF
    shard.write_bytes(bytes(flipped))  # same size: only the hash can tell
    with pytest.raises(DcganError, match="does not match the SHA-256 in the manifest"):
        _train_new(data_copy, tmp_path / "runs")
    shard.write_bytes(good_shard)

    m = json.loads(good_manifest)
    m["shards"][0]["count"] += 1
    m["count"] += 1
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(DcganError, match=r"holds 24 images' worth of bytes but the manifest says 25"):
        _train_new(data_copy, tmp_path / "runs")

    m = json.loads(good_manifest)
    m["shards"][0]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(DcganError, match="does not match the SHA-256"):
        _train_new(data_copy, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_hashes_are_checked_once_then_again_when_the_data_changes_or_with_verify_data(data_copy, tmp_path):
    from dcgan_cli.data.shards import load_manifest, verify_shards

    m = load_manifest(data_copy)
    assert verify_shards(data_copy, m) is True  # first time: hashed, and recorded
    assert (data_copy / ".verified.json").exists()
    assert verify_shards(data_copy, m) is False  # unchanged since: sizes only
    shard = _shard(data_copy)
    st = shard.stat()
    flipped = bytearray(shard.read_bytes())
    flipped[100] ^= 0x01
    shard.write_bytes(bytes(flipped))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # a silent bit flip: same size, same time
    assert verify_shards(data_copy, m) is False
    with pytest.raises(DcganError, match="does not match the SHA-256"):
        verify_shards(data_copy, m, full=True)  # --verify-data


# ----------------------------------------------------------------------------
# 6. Full and read-only disks


@pytest.fixture()
def tmpfs(tmp_path):
    """A small real file system that fills up (tmpfs: needs root), removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "fs"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _fill(where: Path, leave: int) -> Path:
    filler = where / "filler"
    free = shutil.disk_usage(where).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_earlier_ones(tiny_run, tmpfs):
    run = tmpfs / "runs" / tiny_run.name
    shutil.copytree(tiny_run, run)
    filler = _fill(tmpfs, 24 << 10)  # room for config.json, not for a checkpoint
    before = snapshot(run / layout.CKPT_DIR)
    r = dcgan("train", "--resume", run, "--epochs", "3", "--quiet")
    line = one_line_error(r)
    assert "no space left on device" in line.lower() and str(run) in line and "--resume" in line, line
    left = {p.name for p in (run / layout.CKPT_DIR).iterdir()}
    assert {k for k in before if "/" not in k} <= left
    assert not [n for n in left if n.startswith("ckpt-9") or "_temp" in n or ".tmp" in n], left
    assert not [p for p in run.rglob(".*") if p.name != ".dcgan.lock" and p.is_file()]
    assert generator_io.restore(run).step == 6
    filler.unlink()
    r = dcgan("train", "--resume", run, "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert generator_io.restore(run).step == 9


def test_a_read_only_runs_dir_is_one_line_naming_it(data16, tmpfs):
    runs = tmpfs / "runs"
    runs.mkdir()
    if subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode:
        pytest.skip("cannot remount read-only")
    r = dcgan_here("train", "--data", data16, "--runs-dir", runs, "--batch-size", "8", "--quiet")
    line = one_line_error(r)
    assert f"cannot create a run directory under {runs}" in line and "read-only file system" in line
    assert "make it writable" in line


@pytest.mark.slow
def test_a_failed_generator_keras_write_is_one_line_and_leaves_no_temp_file(data16, tmp_path, monkeypatch):
    from dcgan_cli import fsutil
    from dcgan_cli.training.loop import train

    real_replace = os.replace

    def disk_full_on_the_generator(src, dst, *a, **kw):  # the file system's answer, at its boundary
        if str(dst).endswith(layout.GENERATOR_FILE):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(fsutil.os, "replace", disk_full_on_the_generator)
    with pytest.raises(DcganError) as err:
        train(tiny_config(data16, tmp_path / "runs", epochs=1), quiet=True, log=QUIET)
    msg = str(err.value)
    assert "generator.keras failed" in msg and "no space left on device" in msg and "--resume" in msg
    run = next((tmp_path / "runs").iterdir())
    assert not list(run.glob(".generator*")) and not (run / layout.GENERATOR_FILE).exists()
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    train(layout.load_config(run), resume=run, quiet=True, log=QUIET)  # writes it again
    assert generator_io.is_generator_file(run / layout.GENERATOR_FILE)


# ----------------------------------------------------------------------------
# 7. Absurd flags and hand-edited config files


@pytest.mark.parametrize("args, code, says", [
    pytest.param(["train", "--seed", "-1"], 2, "--seed", marks=pytest.mark.subprocess),  # the real entry point too
    (["train", "--name", "a/b"], 1, "name 'a/b' is not a run name"),
    (["train", "--lr-g", "inf"], 1, "lr_g must be a finite number"),
    (["train", "--latent-dim", "1000000"], 1, "lower --latent-dim"),
])
def test_absurd_train_flags_are_one_line(data16, tmp_path, args, code, says):
    runs = tmp_path / "runs"
    r = (dcgan if args[1] == "--seed" else dcgan_here)(*args, "--data", data16, "--runs-dir", runs, "--quiet")
    assert says.replace("_", "-") in one_line_error(r, code=code).replace("_", "-")
    assert not runs.exists()


def test_a_huge_sample_batch_is_a_usage_error_naming_one_that_fits(tiny_run, tmp_path):
    r = dcgan_here("sample", "--run", tiny_run, "-n", "4", "--batch-size", "100000000", tmp_path / "o.png")
    text = one_line_error(r, code=2)
    assert "--batch-size" in text and "of memory" in text and not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("edit, says", [
    pytest.param({"lr_g": "fast"}, "lr_g must be a number", marks=pytest.mark.subprocess),  # the real entry point
    ({"latent_dim": 8.5}, "latent_dim must be a whole number"),
    ({"flip": "yes"}, "flip must be true or false"),
    ({"seed": -3}, "seed must be between 0"),
])
def test_a_hand_edited_config_of_the_wrong_types_is_one_line_naming_the_file(run, tmp_path, edit, says):
    path = run / layout.CONFIG_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    command = dcgan if "lr_g" in edit else dcgan_here
    line = one_line_error(command("sample", "--run", run, "-n", "2", tmp_path / "o.png"))
    assert str(path) in line and says in line and "fix it by hand" in line


def test_the_memory_estimate_counts_the_models_parameters_exactly():
    from dcgan_cli.gan.model import build_discriminator, build_generator
    from dcgan_cli.resources import check_training_memory, discriminator_size, generator_size

    for size, nz, f, c in ((16, 8, 8, 3), (28, 10, 8, 1), (64, 100, 16, 3)):
        assert generator_size(size, c, nz, f)[0] == build_generator(size, c, nz, f, fast=False).count_params()
        assert discriminator_size(size, c, f)[0] == build_discriminator(size, c, f, fast=False).count_params()
    from dcgan_cli.config import TrainConfig

    logs = []
    check_training_memory(TrainConfig(), log=logs.append, available=16 << 30)  # the paper's model: fine
    assert not logs
    with pytest.raises(DcganError, match=r"needs at least 14\.\d GB .* only 8\.6 GB is available; lower --latent"):
        check_training_memory(TrainConfig(latent_dim=100_000), available=8 << 30)
    check_training_memory(TrainConfig(latent_dim=100_000), log=logs.append, available=20 << 30)
    assert len(logs) == 1 and logs[0].startswith("Warning: this model needs at least 14.")


# ----------------------------------------------------------------------------
# 8. Quieter surprises


def test_sample_never_overwrites_without_force(tiny_run, tmp_path):
    out = tmp_path / "grid.png"
    out.write_bytes(b"precious")
    line = one_line_error(dcgan_here("sample", "--run", tiny_run, "-n", "2", out))
    assert "already exists; pass --force" in line and out.read_bytes() == b"precious"
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "seed-0001.png").write_bytes(b"mine")
    line = one_line_error(dcgan_here("sample", "--run", tiny_run, "-n", "2", "--individual", faces))
    assert "seed-0001.png" in line and (faces / "seed-0001.png").read_bytes() == b"mine"
    r = dcgan_here("sample", "--run", tiny_run, "-n", "2", out, "--force")
    assert r.returncode == 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_export_force_replaces_only_an_export(tiny_run, tmp_path):
    import keras

    other = tmp_path / "classifier.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="classifier").save(other)
    before = other.read_bytes()
    line = one_line_error(dcgan_here("export", tiny_run, other, "--force"))
    assert "is not a keras export" in line and other.read_bytes() == before
    mine = tmp_path / "g.keras"
    assert dcgan_here("export", tiny_run, mine).returncode == 0
    r = dcgan_here("export", tiny_run, mine, "--force")
    assert r.returncode == 0, r.stderr[-1000:]


@pytest.mark.slow
def test_resuming_a_finished_run_or_on_other_data_says_so(run, tmp_path):
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess
    from dcgan_cli.training.loop import train

    cfg = layout.load_config(run)
    logs = []
    train(cfg, resume=run, quiet=True, log=logs.append)
    assert any("at step 6 (all 2 epochs done)" in m for m in logs), logs
    assert not any("epoch 3/2" in m for m in logs)

    other = tmp_path / "other-16"
    preprocess(PreprocessConfig(source=str(write_faces(tmp_path / "faces2", seed=7)), out=str(other), size=16,
                                crop="center"), log=QUIET)
    logs = []
    train(cfg.replace(data=str(other), epochs=3), resume=run, quiet=True, log=logs.append)
    assert any("is not the data this run trained on so far" in m for m in logs), logs
    last = layout.read_history(run)[-1]
    assert last["data_changed_from"] != last["data_id"] and last["changed"]["data"][1] == str(other)
    assert np.isfinite(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["d_loss"])
