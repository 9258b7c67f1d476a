"""dcgan directions and dcgan edit: InterFaceGAN's boundaries in z and edits along them, on real tiny runs.

The maths (boundary fit, conditional projection) is tested on plain arrays; the commands on a tiny
unconditional run trained on the digits fixture (classes as one-vs-rest attributes) and on a fake CelebA:
lfw-like faces with a list_attr_celeba.txt written here from their own pixels.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import dcgan_here, ok, one_line_error, tiny_config, write_faces

from dcgan_cli.generate import directions as dirs
from dcgan_cli.generate import edit as ed
from dcgan_cli.runs import layout


# ----------------------------------------------------------------------------
# the maths, on arrays


def test_a_boundary_fitted_on_extreme_scores_finds_the_direction_that_made_them():
    rng = np.random.default_rng(0)
    u = rng.standard_normal(16)
    u /= np.linalg.norm(u)
    z = rng.standard_normal((2000, 16)).astype(np.float32)
    scores = np.tanh(z @ u) + 0.1 * rng.standard_normal(2000)  # nonlinear but monotone along u, plus noise
    normal, intercept, accuracy = dirs.fit_boundary(z, scores, share=0.1, seed=0)
    assert np.isclose(np.linalg.norm(normal), 1, atol=1e-5)
    assert float(normal @ u) > 0.95  # the right direction, and the right sign: more score is +normal
    assert accuracy > 0.95
    flipped, _, _ = dirs.fit_boundary(z, -scores, share=0.1, seed=0)
    assert float(flipped @ u) < -0.95


def test_keep_makes_the_edited_normal_orthogonal_to_the_kept_ones():
    rng = np.random.default_rng(1)
    normals = rng.standard_normal((3, 8)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    d = dirs.Directions(["Smiling", "Male", "Young"], normals, np.zeros(3), np.ones(3), {})
    free = ed.edit_shift(d, {"Smiling": 2.0}, [])
    held = ed.edit_shift(d, {"Smiling": 2.0}, ["Male", "Young"])
    assert np.allclose(free, 2 * normals[0], atol=1e-6)
    assert abs(float(held @ normals[1])) < 1e-5 and abs(float(held @ normals[2])) < 1e-5
    assert np.isclose(np.linalg.norm(held), 2, atol=1e-5)  # still a step of 2, along the projected normal
    assert float(held @ normals[0]) > 0  # and still towards more smiling


def test_attr_values_are_parsed_and_out_of_range_ones_refused():
    assert ed.parse_attr("Smiling=+2, Eyeglasses=-1.5") == {"Smiling": 2.0, "Eyeglasses": -1.5}
    for bad, says in (("Smiling=+11", "out of range"), ("Smiling", "NAME=VALUE"), ("Smiling=x", "NAME=VALUE"),
                      ("Smiling=nan", "NAME=VALUE"), ("A=1,A=2", "twice")):
        with pytest.raises(Exception, match=says):
            ed.parse_attr(bad)


# ----------------------------------------------------------------------------
# a tiny unconditional run on the digits, and its directions


@pytest.fixture(scope="module")
def digits_run(digits, tmp_path_factory):
    """A tiny unconditional grey run on the digits fixture (10 classes), with its directions."""
    from dcgan_cli.training.loop import train

    runs = tmp_path_factory.mktemp("digit-runs")
    run = train(tiny_config(digits, runs, channels=1, epochs=2, steps_per_epoch=3), quiet=True, log=lambda m: None)
    ok(dcgan_here("directions", "--run", run, "--samples", "800", "--classifier-epochs", "20"))
    return run


@pytest.mark.slow  # the module's tiny digits run and its directions (~10 s, once)
def test_directions_save_each_class_as_a_boundary_with_its_accuracy(digits_run):
    info = json.loads((digits_run / layout.DIRECTIONS_INFO).read_text())
    d = dirs.load_directions(digits_run)
    assert d.names == [str(k) for k in range(10)]
    assert d.normals.shape == (10, 8) and np.allclose(np.linalg.norm(d.normals, axis=1), 1, atol=1e-5)
    rows = {r["name"]: r for r in info["attributes"]}
    assert all(0.5 <= r["boundary_accuracy"] <= 1 for r in rows.values())
    # the classifier learnt the digits: its held-out balanced accuracy is far above chance
    assert np.mean([r["classifier_balanced_accuracy"] for r in rows.values()]) > 0.75
    # a second call is refused (the boundaries exist); --force refits them and reuses the kept classifier
    one_line_error(dcgan_here("directions", "--run", digits_run), "already has directions; pass --force")
    classifier = (digits_run / layout.ATTR_CLASSIFIER_FILE).stat().st_mtime_ns
    r = ok(dcgan_here("directions", "--run", digits_run, "--samples", "800", "--force"))
    assert "Reusing the attribute classifier" in r.stderr
    assert (digits_run / layout.ATTR_CLASSIFIER_FILE).stat().st_mtime_ns == classifier
    assert np.allclose(dirs.load_directions(digits_run).normals, d.normals)  # same seed, same boundaries


@pytest.mark.slow  # the module's tiny digits run and its directions (~10 s, once)
def test_an_edit_moves_the_classifiers_score_the_right_way(digits_run, tmp_path):
    from dcgan_cli.generate.sampling import Sampler, latents, load_generator

    d = dirs.load_directions(digits_run)
    classifier = dirs.load_classifier(digits_run)
    sampler = Sampler(load_generator(digits_run).model)
    z = latents(range(5000, 5200), 8)  # seeds the directions never scored
    for k in (1, 3, 7):
        n = d.normal(str(k))
        mean = [float(dirs.predict(classifier, sampler(z + a * n))[:, k].mean()) for a in (-2, 0, 2)]
        assert mean[0] < mean[1] < mean[2], (k, mean)
    # the command does the same edit: its --individual images are G(z + 2 n_3)
    ok(dcgan_here("edit", "--run", digits_run, "--attr", "3=+2", "--seeds", "5000-5003", "--individual",
                  tmp_path / "ind", "-o", tmp_path / "grid.png"))
    want = sampler(latents(range(5000, 5004), 8) + 2 * d.normal("3"))
    got = np.stack([np.asarray(Image.open(tmp_path / "ind" / f"seed-{s:04d}.png")) for s in range(5000, 5004)])
    assert np.array_equal(got, want[..., 0])
    assert Image.open(tmp_path / "grid.png").size == (2 * 18 + 2, 4 * 18 + 2)  # rows: inputs; columns: before, after


@pytest.mark.slow  # the module's tiny digits run and its directions (~10 s, once)
def test_a_sweep_writes_one_frame_per_step_as_a_gif_a_strip_and_files(digits_run, tmp_path):
    np.save(tmp_path / "z.npy", np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32))
    ok(dcgan_here("edit", "--run", digits_run, "--sweep", "3", "--frames", "5", "--latents", tmp_path / "z.npy",
                  "-o", tmp_path / "sweep.gif", "--individual", tmp_path / "ind"))
    gif = Image.open(tmp_path / "sweep.gif")
    assert gif.n_frames == 5
    assert sorted(p.name for p in (tmp_path / "ind").iterdir()) == [f"latent-{i:04d}-f{f:02d}.png" for i in range(3)
                                                                       for f in range(5)]
    ok(dcgan_here("edit", "--run", digits_run, "--sweep", "3", "--frames", "4", "--keep", "8", "--latents",
                  tmp_path / "z.npy", "-o", tmp_path / "strip.png"))
    assert Image.open(tmp_path / "strip.png").size == (4 * 18 + 2, 3 * 18 + 2)


@pytest.mark.slow  # the module's tiny digits run and its directions (~10 s, once)
def test_edit_refuses_before_any_work(digits_run, tmp_path):
    one_line_error(dcgan_here("edit", "--run", digits_run, "--attr", "Smiling=+1", "--seeds", "0", "-o",
                              tmp_path / "x.png"), "unknown attribute 'Smiling' in --attr", "0, 1, 2")
    one_line_error(dcgan_here("edit", "--run", digits_run, "--attr", "3=+1", "--keep", "3", "--seeds", "0", "-o",
                              tmp_path / "x.png"), "both edited and kept", code=2)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_saved_directions_load_with_numpy_alone(digits_run, tmp_path):
    code = (f"import sys, json, numpy as np\n"
            f"f = np.load({str(digits_run / layout.DIRECTIONS_FILE)!r}, allow_pickle=False)\n"
            f"info = json.load(open({str(digits_run / layout.DIRECTIONS_INFO)!r}))\n"
            f"assert 'dcgan_cli' not in sys.modules\n"
            f"print(json.dumps({{'names': [str(n) for n in f['names']], 'shape': list(f['normals'].shape), "
            f"'norms': np.linalg.norm(f['normals'], axis=1).tolist(), 'acc': f['accuracy'].tolist(), "
            f"'info': [a['name'] for a in info['attributes']]}}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    d = dirs.load_directions(digits_run)
    assert got["names"] == d.names == got["info"] and got["shape"] == [10, 8]
    assert np.allclose(got["norms"], 1, atol=1e-5) and np.allclose(got["acc"], d.accuracy)


# ----------------------------------------------------------------------------
# a fake CelebA: attributes from a list_attr_celeba.txt, an unconditional run, a photo edited


@pytest.mark.slow
def test_fake_celeba_attributes_to_an_edited_photo(tmp_path):
    faces = write_faces(tmp_path / "celeba" / "img_align_celeba", n=32)
    names = sorted(p.name for p in faces.iterdir())
    means = {n: np.asarray(Image.open(faces / n), np.float32).mean(axis=(0, 1)) for n in names}
    bright = np.median([m.mean() for m in means.values()])
    red = np.median([m[0] - m[2] for m in means.values()])
    lines = ["{}".format(len(names)), "Bright Reddish"] + [
        f"{n} {1 if means[n].mean() > bright else -1} {1 if means[n][0] - means[n][2] > red else -1}" for n in names]
    (faces.parent / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    data = tmp_path / "celeba-16"
    ok(dcgan_here("preprocess", faces, "--out", data, "--size", "16", "--crop", "center", "--labels", "celeba"))
    from dcgan_cli.training.loop import train

    run = train(tiny_config(data, tmp_path / "runs", epochs=1), quiet=True, log=lambda m: None)
    r = ok(dcgan_here("directions", "--run", run, "--samples", "300", "--classifier-epochs", "5"))
    assert "Bright" in r.stderr and "Reddish" in r.stderr
    photo = faces / names[0]
    search = ["--steps", "5", "--restarts", "1", "--seed", "3"]
    ok(dcgan_here("project", photo, "--run", run, "-o", tmp_path / "proj", *search))
    ok(dcgan_here("edit", photo, "--run", run, "--attr", "Bright=+2", "--keep", "Reddish", "-o",
                  tmp_path / "edit.png", "--individual", tmp_path / "ind", *search))
    grid = np.asarray(Image.open(tmp_path / "edit.png"))
    assert grid.shape == (16 + 4, 3 * 18 + 2, 3)  # one row: the photo, its projection, the edit
    projection = grid[2:18, 20:36]
    assert np.array_equal(projection, np.asarray(Image.open(tmp_path / "proj" / f"{photo.stem}.png")))
    from dcgan_cli.generate.sampling import Sampler, load_generator

    z = np.load(tmp_path / "proj" / "latents.npy")
    d = dirs.load_directions(run)
    shift = ed.edit_shift(d, {"Bright": 2.0}, ["Reddish"])
    want = Sampler(load_generator(run).model)(z + shift)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ind" / f"{photo.stem}.png")), want)
