"""The one owner of checkpoints (runs/checkpoints.py) on real tf.train.Checkpoints of a few variables.

No GAN is trained here: the rules are about files (names, the index, fall-backs, partial saves), and
a checkpoint of two variables has the same files as a GAN's.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from dcgan_cli.errors import DcganError  # noqa: E402
from dcgan_cli.runs import checkpoints, layout  # noqa: E402


class _Model:
    """What Checkpoints.save checks for NaN: something with variables."""

    def __init__(self, v):
        self.variables = self.trainable_variables = [v]


def _run(tmp_path, keep=2):
    import keras
    import tensorflow as tf

    w = keras.Variable([1.0, 2.0], name="w")  # a model's weight, as the trainers' models hold them
    step = tf.Variable(0, dtype=tf.int64, name="step")
    ckpts = checkpoints.Checkpoints(tf.train.Checkpoint(w=w, step=step), tmp_path / layout.CKPT_DIR, tmp_path,
                                    keep=keep, resume_command=f"dcgan train --resume {tmp_path}",
                                    models=[_Model(w)], advice=lambda last: f"last is {last}")
    return ckpts, w, step


def test_a_checkpoint_is_named_after_its_step_and_the_name_parses_back(tmp_path):
    ckpts, w, step = _run(tmp_path)
    for n in (0, 3, 120):
        assert checkpoints.checkpoint_step(tmp_path / checkpoints.checkpoint_name(n)) == n
        assert checkpoints.checkpoint_step(ckpts.save(n)) == n
    assert checkpoints.checkpoint_step(tmp_path / "generator.keras") is None
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.checkpoint_paths(ckpts.directory)] == [3, 120]


def test_a_saved_checkpoint_is_found_and_restored_and_last_good_is_the_fallback(tmp_path):
    import shutil

    ckpts, w, step = _run(tmp_path)
    w.assign([5.0, 6.0])
    path = ckpts.save(4)
    kept = checkpoints.keep_copy(tmp_path, path)
    assert kept == tmp_path / layout.LAST_GOOD_DIR / checkpoints.checkpoint_name(4)
    w.assign([0.0, 0.0])
    assert ckpts.restore(ckpts.directory, log=print) == path and list(map(float, w.numpy())) == [5.0, 6.0]
    shutil.rmtree(ckpts.directory)  # checkpoints/ lost: last-good/ still holds the epoch's end
    w.assign([0.0, 0.0])
    assert ckpts.restore(ckpts.directory, log=print) == str(kept) and list(map(float, w.numpy())) == [5.0, 6.0]
    shutil.rmtree(tmp_path / layout.LAST_GOOD_DIR)
    with pytest.raises(DcganError, match="has no checkpoint to resume from"):
        ckpts.restore(ckpts.directory, log=print)


def test_a_damaged_index_is_rebuilt_from_the_files_and_a_killed_save_is_cleaned(tmp_path):
    ckpts, w, step = _run(tmp_path, keep=3)
    for n in (1, 2):
        ckpts.save(n)
    index = ckpts.directory / "checkpoint"
    index.write_bytes(b"\x00garbage")
    temp = ckpts.directory / f"{checkpoints.checkpoint_name(3)}_temp"  # what a kill mid-save leaves
    temp.mkdir()
    warnings = []
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.checkpoint_paths(ckpts.directory, warnings.append)] \
        == [1, 2] and "using the checkpoints found on disk" in warnings[0]
    repaired = checkpoints.repair_checkpoints(ckpts.directory, warnings.append)
    assert [checkpoints.checkpoint_step(p) for p in repaired] == [1, 2] and not temp.exists()
    assert "rebuilt it" in warnings[-1] and checkpoints.checkpoint_paths(ckpts.directory) == repaired


def test_a_failed_save_leaves_only_the_earlier_checkpoints(tmp_path):
    ckpts, w, step = _run(tmp_path)
    first = ckpts.save(1)
    for suffix in (".index", ".data-00000-of-00001"):  # a save of step 2 that died half-way
        (ckpts.directory / (checkpoints.checkpoint_name(2) + suffix)).write_bytes(b"x")
    checkpoints.remove_partial_checkpoint(ckpts.directory, 2)
    assert sorted(p.name for p in ckpts.directory.iterdir()) == sorted(
        ["checkpoint", os.path.basename(first) + ".index", os.path.basename(first) + ".data-00000-of-00001"])


def test_nan_weights_are_never_saved_and_drop_after_forgets_the_later_ones(tmp_path):
    ckpts, w, step = _run(tmp_path, keep=5)
    for n in (1, 2, 3):
        ckpts.save(n)
    ckpts.drop_after(1)
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.checkpoint_paths(ckpts.directory)] == [1]
    assert checkpoints.checkpoint_step(ckpts.save(2)) == 2  # the next save is the newest again
    w.assign([float("nan"), 0.0])
    with pytest.raises(checkpoints.NonFiniteLoss, match="not checkpointing step 3: .* is not finite; last is"):
        ckpts.save(3)
    assert [checkpoints.checkpoint_step(p) for p in checkpoints.checkpoint_paths(ckpts.directory)] == [1, 2]
