"""Conditional runs: `train --condition`, `sample --class / --attr`, export with (z, y), a fake CelebA end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers import dcgan_here, ok, one_line_error, tiny_config, write_faces

HERE = Path(__file__).parent


def _pixels(path):
    from PIL import Image

    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def cond_run(digits, tmp_path_factory):
    """A tiny run conditioned on the digits' classes (folders 0..9): 16x16 grey, EMA, ADA, label smoothing,
    2 epochs of 3 steps."""
    from dcgan_cli.training.loop import train

    runs = tmp_path_factory.mktemp("cond-runs")
    return train(tiny_config(digits, runs, channels=1, condition="classes", ema=0.9, num_samples=20, augment="ada",
                             augment_p=0.3, label_smoothing=0.1), quiet=True, log=lambda m: None)


def _state(run_dir):
    import tensorflow as tf

    from dcgan_cli.config import TrainConfig
    from dcgan_cli.data.conditions import load_table
    from dcgan_cli.gan.step import build_gan

    cfg = TrainConfig.load(run_dir / "config.json")
    gan = build_gan(cfg, "fp32", load_table(run_dir / "condition.json"))
    gan.checkpoint().restore(tf.train.latest_checkpoint(str(run_dir / "checkpoints"))).assert_existing_objects_matched()
    return gan


@pytest.mark.slow
def test_conditional_resume_equals_uninterrupted_training(cond_run, tmp_path):
    from dcgan_cli.config import TrainConfig
    from dcgan_cli.training.loop import train

    straight = cond_run
    cfg_b = TrainConfig.load(cond_run / "config.json").replace(runs_dir=str(tmp_path / "b"))
    run = train(cfg_b, quiet=True, log=lambda m: None, max_steps=2)  # stops mid-epoch 1, checkpointed
    run = train(cfg_b, resume=run, quiet=True, log=lambda m: None)
    a, b = _state(straight), _state(run)
    assert int(a.step.numpy()) == int(b.step.numpy()) == 6
    assert a.generator.get_layer("label_embed") is not None and len(a.discriminator.inputs) == 2
    for va, vb in zip(a.generator.variables + a.discriminator.variables + a.g_ema.variables,
                      b.generator.variables + b.discriminator.variables + b.g_ema.variables):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-4, atol=1e-5)
    # The table of the training labels' joint distribution: the digits fixture has 40 images per class.
    table = json.loads((straight / "condition.json").read_text())
    assert table["names"] == [str(d) for d in range(10)] and table["counts"] == [40] * 10
    # A --condition change on resume is refused (it is the recipe), before anything is written.
    with pytest.raises(Exception, match="condition"):
        train(cfg_b.replace(condition="", epochs=3), resume=run, quiet=True, log=lambda m: None)


def test_grid_rows_are_classes_and_class_decides_the_image(cond_run, tmp_path):
    grid = _pixels(cond_run / "samples" / "epoch-0002.png")
    assert grid.shape[0] == 10 * 18 + 2 and grid.shape[1] == 2 * 18 + 2  # 10 classes x (20 // 10) latents
    ok(dcgan_here("sample", tmp_path / "g.png", "--run", cond_run, "-n", 3))  # no --class: a row per class
    assert _pixels(tmp_path / "g.png").shape[:2] == (10 * 18 + 2, 3 * 18 + 2)
    for name, cls in (("a", "3"), ("b", "3"), ("c", "5")):
        ok(dcgan_here("sample", tmp_path / f"{name}.png", "--run", cond_run, "-n", 4, "--class", cls))
    a, b, c = (_pixels(tmp_path / f"{n}.png").astype(int) for n in "abc")
    assert np.array_equal(a, b) and np.abs(a - c).max() > 0
    # the grid's row of class 3 is --class 3 with the same seeds
    g = _pixels(tmp_path / "g.png")
    np.testing.assert_array_equal(g[2 + 3 * 18:2 + 3 * 18 + 16, 2:2 + 16], _pixels(tmp_path / "a.png")[2:18, 2:18])


@pytest.mark.subprocess
@pytest.mark.slow
def test_export_loads_in_a_fresh_process_and_draws_what_sample_class_draws(cond_run, tmp_path):
    ok(dcgan_here("export", cond_run, tmp_path / "g.keras"))
    ok(dcgan_here("export", cond_run, tmp_path / "sm"))
    ok(dcgan_here("sample", "--run", cond_run, "--seeds", "0-2", "--class", "7", "--individual", tmp_path / "ind"))
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np, keras, tensorflow as tf
        names = json.load(open({str(tmp_path / "g.labels.json")!r}))["names"]
        assert names == json.load(open({str(tmp_path / "sm" / "labels.json")!r}))["names"]
        z = np.stack([np.random.default_rng(s).standard_normal(8) for s in range(3)]).astype("float32")
        y = np.zeros((3, len(names)), "float32"); y[:, names.index("7")] = 1
        g = keras.saving.load_model({str(tmp_path / "g.keras")!r})
        k = np.round((np.asarray(g([z, y])) + 1) * 127.5).clip(0, 255)
        s = tf.saved_model.load({str(tmp_path / "sm")!r}).signatures["serving_default"]
        served = s(latent=tf.constant(z), labels=tf.constant(y))["images"].numpy()
        assert "dcgan_cli" not in sys.modules
        print(json.dumps({{"keras": k.astype(int).tolist(), "served": served.astype(int).tolist()}}))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    sampled = np.stack([_pixels(tmp_path / "ind" / f"seed-{s:04d}.png").reshape(16, 16, 1) for s in range(3)])
    assert np.abs(np.array(got["keras"]) - sampled).max() <= 1
    assert np.abs(np.array(got["served"]) - sampled).max() <= 1


def _fake_celeba(root: Path) -> Path:
    """lfw-like faces in img_align_celeba/ with a list_attr_celeba.txt of three attributes, preprocessed."""
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    faces = write_faces(root / "img_align_celeba", n=24)
    names = sorted(p.name for p in faces.iterdir())
    rng = np.random.default_rng(0)
    lines = [str(len(names)), "Smiling Eyeglasses Male"]
    lines += [f"{n} " + " ".join(rng.choice(["1", "-1"], 3)) for n in names]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    out = root / "celeba-16"
    preprocess(PreprocessConfig(source=str(faces), out=str(out), size=16, crop="center", labels="celeba"),
               log=lambda m: None)
    return out


@pytest.mark.slow
def test_fake_celeba_attributes_train_and_sample(tmp_path):
    data = _fake_celeba(tmp_path)
    tiny = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--latent-dim", "8", "--g-filters", "8",
            "--d-filters", "8", "--precision", "fp32", "--quiet", "--runs-dir", tmp_path / "runs"]
    one_line_error(dcgan_here("train", "--data", data, *tiny, "--condition", "attributes:Smiling,Beard"),
                   "unknown attribute 'Beard'", "Smiling, Eyeglasses, Male")
    assert not (tmp_path / "runs").exists()
    ok(dcgan_here("train", "--data", data, *tiny, "--condition", "attributes:Smiling,Male"))
    run = next((tmp_path / "runs").iterdir())
    table = json.loads((run / "condition.json").read_text())
    assert table["names"] == ["Smiling", "Male"] and sum(table["counts"]) == 24
    ok(dcgan_here("sample", tmp_path / "s.png", "--run", run, "-n", 4, "--attr", "Smiling=1"))
    ok(dcgan_here("sample", tmp_path / "t.png", "--run", run, "-n", 4, "--attr", "Smiling=0,Male=1"))
    assert not np.array_equal(_pixels(tmp_path / "s.png"), _pixels(tmp_path / "t.png"))
    one_line_error(dcgan_here("sample", tmp_path / "u.png", "--run", run, "--attr", "Eyeglasses=1"),
                   "unknown attribute 'Eyeglasses'", "Smiling, Male")
    one_line_error(dcgan_here("sample", tmp_path / "u.png", "--run", run, "--class", "3"), "use --attr")
    assert not (tmp_path / "u.png").exists()


def test_unsaid_attributes_come_from_matching_training_rows():
    from dcgan_cli.data.conditions import Condition, LabelTable
    from dcgan_cli.generate.conditional import labeller

    cond = Condition("attributes", "attributes", ("A", "B"), (0, 1), 2)
    table = LabelTable(cond, np.array([[1, 1], [-1, -1], [-1, 1]], np.float32), np.array([5, 3, 1]))
    y = labeller(table, None, "A=1")(list(range(50)))
    assert (y == [1, 1]).all()  # every image with A has B in the training labels
    y = labeller(table, None, "A=0")(list(range(200)))
    assert (y[:, 0] == -1).all() and set(y[:, 1]) == {-1.0, 1.0}  # B as among the training images without A
    assert 0.6 < (y[:, 1] == -1).mean() < 0.9  # 3 of 4
    only = LabelTable(cond, np.array([[1, 1]], np.float32), np.array([4]))
    y = labeller(only, None, "A=0")(list(range(20)))  # no training row without A: B by its marginal (always 1)
    assert (y == [-1, 1]).all()


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_replicas_train_a_conditional_run_like_one_device(digits, tmp_path):
    import tensorflow as tf

    # D's regularisers ride along (spectral normalisation of the projection head, bCR with the fakes' labels),
    # and lazy R1 on D without batch norm (the dcgan preset's D from 1,000 images) beside G's synchronised
    # batch norm: R1 on step 0 inside its tf.cond, off on step 1. Not the hinge: alone it agrees to 1e-6, but
    # with these its kink at the margin turns float-order noise into 1e-4.
    overrides = dict(channels=1, condition="classes", epochs=1, steps_per_epoch=2, ema=0.9, label_smoothing=0.1,
                     spectral_norm=True, bcr=1.0, d_norm="none", r1_gamma=1.0, r1_interval=2)
    proc = subprocess.run([sys.executable, str(HERE / "two_replicas.py"), str(digits), str(tmp_path / "runs"),
                           json.dumps(overrides), "default,mirrored"], capture_output=True, text=True, timeout=300,
                          cwd=HERE.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["replicas"] == 2

    def state(run):
        reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(Path(run) / "checkpoints")))
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "CHECKPOINTABLE" not in k}

    one, two = state(runs["default"]), state(runs["mirrored"])
    assert one.keys() == two.keys()
    # Spectral normalisation's u, one per kernel of the 16x16 D: down0, down1, logit and the label projection.
    assert sum(k.startswith("discriminator/") and "/u/" in k for k in one) == 4, sorted(one)
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
