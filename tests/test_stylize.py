"""`dcgan stylize`: the losses against NumPy, a real transfer of stripes, determinism, errors, faces.

Everything runs for real on tiny images (32 to 64 px) with the seeded random
network; nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError
from dcgan_cli.images import GRID_PAD
from helpers import ok, one_line_error

runner = CliRunner()


@pytest.fixture(autouse=True)
def empty_keras_cache(tmp_path, monkeypatch):
    """The default features are VGG19 when Keras' cache holds its weights: every test here starts without
    them (here and in subprocesses), whatever this machine's ~/.keras holds."""
    from dcgan_cli.data import weights

    monkeypatch.setattr(weights, "KERAS_CACHE_DIR", str(tmp_path / "keras-home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path / "keras-home" / "models"


def stylize(*args):
    return runner.invoke(app, ["stylize", *map(str, args)])


def save(path, pixels, mode=None):
    Image.fromarray(np.asarray(pixels), mode).save(path)
    return path


def stripes(size, period=8, vertical=True):
    """uint8 RGB black-and-white stripes: vertical ones vary along x."""
    x = np.arange(size)
    line = np.where(np.sin(2 * np.pi * (x + 0.5) / period) > 0, 255, 0).astype(np.uint8)
    img = np.repeat(line[None, :], size, axis=0)
    img = img if vertical else img.T
    return np.repeat(img[..., None], 3, axis=-1)


def noise(size, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    d = tmp_path_factory.mktemp("stylize-images")
    return {
        "noise": save(d / "noise.png", noise(48)),
        "stripes": save(d / "stripes.png", stripes(48)),
    }


# ----------------------------------------------------------------------------
# the losses against brute-force NumPy


def np_gram(f):
    """F^T F by explicit sums over positions: (H, W, N) -> (N, N)."""
    h, w, n = f.shape
    g = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            for y in range(h):
                for x in range(w):
                    g[i, j] += f[y, x, i] * f[y, x, j]
    return g


def test_gram_matrix_and_both_losses_match_brute_force_numpy():
    from dcgan_cli.generate.stylize import content_loss, gram, normalised_gram, style_layer_loss, tv_loss

    rng = np.random.default_rng(0)
    f = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    target = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    style_f = rng.normal(size=(1, 7, 3, 4)).astype(np.float32)  # another size: the Grams are per position

    np.testing.assert_allclose(gram(f).numpy(), [np_gram(x) for x in f], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(normalised_gram(f).numpy(), [np_gram(x) / 30 for x in f], rtol=1e-5, atol=1e-6)

    expected_content = [((a - b) ** 2).sum() / (b ** 2).sum() for a, b in zip(f.astype(float), target)]
    np.testing.assert_allclose(content_loss(f, target).numpy(), expected_content, rtol=1e-5)

    g_s = np_gram(style_f[0]) / 21
    expected_style = [((np_gram(x) / 30 - g_s) ** 2).sum() / (g_s ** 2).sum() for x in f]
    target_gram = normalised_gram(style_f)
    np.testing.assert_allclose(style_layer_loss(f, target_gram).numpy(), expected_style, rtol=1e-5)
    assert style_layer_loss(style_f, target_gram).numpy()[0] == pytest.approx(0, abs=1e-6)

    img = rng.uniform(size=(2, 5, 6, 3)).astype(np.float32)
    expected_tv = []
    for x in img.astype(float):
        dy = sum((x[y + 1, c] - x[y, c]) ** 2 for y in range(4) for c in range(6)).sum() / (4 * 6 * 3)
        dx = sum((x[y, c + 1] - x[y, c]) ** 2 for y in range(5) for c in range(5)).sum() / (5 * 5 * 3)
        expected_tv.append(dx + dy)
    np.testing.assert_allclose(tv_loss(img).numpy(), expected_tv, rtol=1e-5)


def test_the_random_network_is_normalised_per_layer_and_seeded():
    from dcgan_cli.generate.stylize import RANDOM_BLOCKS, calibration_image, random_vgg

    import keras

    a, b, c = random_vgg(0), random_vgg(0), random_vgg(1)
    np.testing.assert_array_equal(a.get_layer("block1_conv1").get_weights()[0],
                                  b.get_layer("block1_conv1").get_weights()[0])
    assert not np.array_equal(a.get_layer("block1_conv1").get_weights()[0],
                              c.get_layer("block1_conv1").get_weights()[0])
    convs = [l for l in a.layers if "conv" in l.name]
    assert len(convs) == sum(n for _, n in RANDOM_BLOCKS)
    probe = calibration_image(seed=0)
    for conv in convs:  # every channel of every layer: unit variance before the ReLU, deep or shallow
        y = np.asarray(keras.Model(a.input, conv.output)(probe))
        np.testing.assert_allclose(y.reshape(-1, y.shape[-1]).std(axis=0), 1.0, rtol=1e-3)


# ----------------------------------------------------------------------------
# a real transfer


def orientation_ratio(pixels):
    """Spectral energy of vertical stripes (along the x frequency axis) over that of horizontal ones."""
    g = np.asarray(pixels, np.float64).mean(-1)
    p = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(g.shape[0]), np.fft.fftfreq(g.shape[1]), indexing="ij")
    angle = np.degrees(np.arctan2(np.abs(fy), np.abs(fx)))
    away_from_dc = np.hypot(fx, fy) > 0.03
    return p[(angle < 15) & away_from_dc].sum() / p[(angle > 75) & away_from_dc].sum()


@pytest.mark.slow
def test_stripes_onto_noise_take_the_style_orientation_and_the_style_loss_falls(tmp_path):
    from dcgan_cli.generate.stylize import StyleOptions, stylize_file

    content = save(tmp_path / "noise.png", noise(64))
    style = save(tmp_path / "vertical.png", stripes(64))
    assert orientation_ratio(np.asarray(Image.open(content))) == pytest.approx(1, rel=0.5)  # no orientation
    options = StyleOptions(size=64, steps=200, init="noise", content_weight=0.1, tv_weight=1.0, seed=0)
    r = stylize_file(content, style, tmp_path / "out.png", options)

    out = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(out, r.pixels[0])
    assert orientation_ratio(out) > 5, orientation_ratio(out)  # dominated by the style's orientation
    assert r.final["style"] <= 0.1 * r.start["style"], (r.start, r.final)  # fell by 90% or more
    assert np.isfinite(r.final["content"]) and r.final["content"] < 1.5, r.final  # bounded

    # The same content and seed with horizontal stripes: the orientation follows the style.
    horizontal = save(tmp_path / "horizontal.png", stripes(64, vertical=False))
    r = stylize_file(content, horizontal, tmp_path / "out-h.png", dataclasses.replace(options, steps=100))
    assert orientation_ratio(r.pixels[0]) < 1 / 5


# ----------------------------------------------------------------------------
# the command


@pytest.mark.slow
@pytest.mark.subprocess
def test_same_seed_same_bytes_across_processes_and_another_seed_differs(pictures, tmp_path):
    args = [pictures["noise"], pictures["stripes"], "--size", 32, "--steps", 15, "--init", "noise", "--quiet"]
    ok(stylize(*args, "-o", tmp_path / "a.png", "--seed", 3))
    subprocess.run([sys.executable, "-m", "dcgan_cli", "stylize", *map(str, args), "-o", tmp_path / "b.png",
                    "--seed", "3"], check=True, capture_output=True)
    ok(stylize(*args, "-o", tmp_path / "c.png", "--seed", 4))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_the_output_says_which_features_were_used_and_save_every_writes_steps(pictures, tmp_path):
    out = tmp_path / "styled.png"
    r = ok(stylize(pictures["noise"], pictures["stripes"], "-o", out, "--size", 32, "--steps", 6,
                   "--save-every-steps", 2, "--quiet"))
    assert "features: random VGG-shaped network (seed 0, per-layer normalised)" in r.output
    assert "style loss" in r.output
    assert Image.open(out).size == (32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styled.png", "styled.step-0002.png",
                                                          "styled.step-0004.png"]
    assert not list(tmp_path.glob(".*"))  # no temp files left


def test_grey_and_transparent_images_are_converted_and_said_so(tmp_path):
    from dcgan_cli.generate.stylize import load_image

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = (255, 0, 0, 255)  # left opaque red, right fully transparent
    grey = np.tile(np.arange(40, dtype=np.uint8) * 6, (40, 1))
    img = load_image(save(tmp_path / "rgba.png", rgba), "content")
    np.testing.assert_allclose(img.pixels[0, 0], [1, 0, 0])
    np.testing.assert_allclose(img.pixels[0, 39], [1, 1, 1])  # transparency laid on white
    assert "transparency" in img.note
    g = load_image(save(tmp_path / "grey.png", grey, "L"), "style")
    assert g.pixels.shape == (40, 40, 3) and np.array_equal(g.pixels[..., 0], g.pixels[..., 2])
    assert g.note == "grey -> RGB"
    deep = load_image(save(tmp_path / "grey16.png", (grey.astype(np.uint16) * 257)), "style")
    np.testing.assert_allclose(deep.pixels, g.pixels, atol=1 / 255)  # 16-bit scaled, not clipped

    r = ok(stylize(tmp_path / "rgba.png", tmp_path / "grey.png", "-o", tmp_path / "o.png", "--size", 32,
                   "--steps", 2, "--quiet"))
    assert "The content image was converted: RGBA with transparency laid on white" in r.output
    assert "The style image was converted: grey -> RGB" in r.output
    assert Image.open(tmp_path / "o.png").mode == "RGB"


def test_bad_input_is_a_one_line_error_and_nothing_is_overwritten(pictures, tmp_path):
    good = [pictures["noise"], pictures["stripes"]]
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    floaty = save(tmp_path / "float.tif", np.ones((40, 40), np.float32) * 3.5, "F")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    cases = [
        ([tmp_path / "missing.png", pictures["stripes"], "-o", out], ["no content image at", "missing.png"]),
        ([pictures["noise"], text, "-o", out], ["not an image Pillow can read", "notes.png"]),
        ([pictures["noise"], floaty, "-o", out], ["floating-point", "8-bit PNG"]),
        ([*good, "-o", blocker / "out.png"], ["is a file, not a folder"]),
        # faces: OUT is checked before the generator loads (this model file does not exist)
        ([pictures["stripes"], "--generator", tmp_path / "nope.keras", "-o", blocker / "g.png"], ["is a file, not a folder"]),
        ([pictures["stripes"], "--generator", tmp_path / "nope.keras", "-o", out], ["no model file at"]),
        ([*good, "-o", tmp_path / "out.txt"], ["use one of .png"]),
        ([*good, "-o", out, "--size", 4096], ["above 1024", "upscale"]),
        ([*good, "-o", out, "--size", 8], ["too small"]),
        ([*good, "-o", out, "--features", "vgg19:" + str(tmp_path / "none.h5")], ["no VGG19 weights file"]),
        ([*good, "-o", out, "--features", "vgg19:" + str(text)], ["not a .h5 weights file"]),
        ([*good, "-o", out, "--content-layer", "block9_conv9"], ["no layer block9_conv9", "block1_conv1"]),
        ([*good, "-o", out, "--style-layers", "block1_conv1:0"], ["weight 0"]),
    ]
    for args, fragments in cases:
        one_line_error(stylize(*args, "--steps", 1, "--quiet"), *fragments)
    assert out.read_bytes() == b"precious"

    usage = [
        [pictures["noise"], "-o", out],  # the style image is missing
        [*good, pictures["noise"], "-o", out],
        [*good, "-o", out, "--init", "zeros"],
        [*good, "-o", out, "--style-layers", "conv1=3"],
        [*good, "-o", out, "--style-layers", "block1_conv1,block1_conv1"],
        [*good, "-o", out, "--features", "resnet"],
        [pictures["stripes"], "-o", out, "--generator", tmp_path / "g.keras", "--run", tmp_path],
        [*good, "-o", out, "--generator", tmp_path / "g.keras"],  # a content image with --model
        [*good, "-o", out, "--seeds", "0-3"],  # seeds without a generator
        [pictures["stripes"], "-o", out, "--generator", tmp_path / "g.keras", "--save-every-steps", 5],
    ]
    for args in usage:
        r = stylize(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "Traceback" not in r.output


def test_a_weights_file_of_another_network_is_a_one_line_error(pictures, tmp_path):
    import h5py
    import keras
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv")])
    path = tmp_path / "inception_v3_notop.h5"
    with h5py.File(path, "w") as f:  # the legacy layout of Keras' published weight files
        save_weights_to_hdf5_group(f, other)
    one_line_error(stylize(*pictures.values(), "-o", tmp_path / "o.png", "--features", f"vgg19:{path}",
                           "--steps", 1), "cannot load", "as VGG19 weights", "vgg19_weights_tf_dim_ordering")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_vgg19_features_load_keras_weights_file_and_run(pictures, tmp_path, empty_keras_cache):
    """A VGG19 notop weights file in Keras' published (legacy HDF5) layout, random values: loads and runs."""
    import h5py
    import keras
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    vgg = keras.applications.VGG19(weights=None, include_top=False)
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, vgg)
    r = ok(stylize(*pictures.values(), "-o", tmp_path / "o.png", "--features", f"vgg19:{path}", "--size", 32,
                   "--steps", 2, "--quiet"))
    assert "features: VGG19 from vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (md5 " in r.output
    assert "not Keras' published file" in r.output
    assert Image.open(tmp_path / "o.png").size == (32, 32)
    # --vgg-weights FILE is the same thing; and with the file in Keras' cache, VGG19 is the default.
    r = ok(stylize(*pictures.values(), "-o", tmp_path / "p.png", "--vgg-weights", path, "--size", 32, "--steps", 2,
                   "--quiet"))
    assert "features: VGG19 from" in r.output
    empty_keras_cache.mkdir(parents=True)
    (empty_keras_cache / path.name).hardlink_to(path)
    r = ok(stylize(*pictures.values(), "-o", tmp_path / "q.png", "--size", 32, "--steps", 2, "--quiet"))
    assert "features: VGG19 from" in r.output and "No VGG19" not in r.output
    assert (tmp_path / "p.png").read_bytes() == (tmp_path / "q.png").read_bytes()


def test_without_vgg19_weights_the_default_says_it_falls_back_in_one_line(pictures, tmp_path, empty_keras_cache):
    r = ok(stylize(*pictures.values(), "-o", tmp_path / "o.png", "--size", 32, "--steps", 2, "--quiet"))
    (line,) = [ln for ln in r.stderr.splitlines() if "VGG19" in ln]
    assert line.startswith("No VGG19 ImageNet weights in Keras' cache") and "random VGG-shaped network" in line
    assert "dcgan download vgg19" in line and "--vgg-weights FILE" in line and str(empty_keras_cache) in line
    assert "features: random VGG-shaped network" in r.output
    r = ok(stylize(*pictures.values(), "-o", tmp_path / "r.png", "--features", "random", "--size", 32, "--steps",
                   2, "--quiet"))
    assert "No VGG19" not in r.output  # asked for the random network: nothing to say
    assert (tmp_path / "o.png").read_bytes() == (tmp_path / "r.png").read_bytes()
    one_line_error(stylize(*pictures.values(), "-o", tmp_path / "s.png", "--features", "vgg19", "--steps", 1),
                   "dcgan download vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    one_line_error(stylize(*pictures.values(), "-o", tmp_path / "s.png", "--features", "random", "--vgg-weights",
                           tmp_path / "w.h5"), "--vgg-weights", code=2)


# ----------------------------------------------------------------------------
# generated faces


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    """A tiny generator (16x16 RGB, latent 8) saved as .keras, the way `dcgan export` writes one."""
    import keras

    from dcgan_cli.gan.model import build_generator
    from dcgan_cli.gan.generator_io import save_generator

    keras.utils.set_random_seed(0)  # the same weights in every run, whatever ran before
    return save_generator(build_generator(16, 3, 8, 8, fast=False), tmp_path_factory.mktemp("gen") / "generator.keras")


def test_model_faces_grid_has_the_faces_above_their_stylised_versions(generator_file, pictures, tmp_path):
    from dcgan_cli.gan.generator_io import load_generator_file
    from dcgan_cli.generate.sampling import Sampler, latents
    from dcgan_cli.generate.stylize import resize_longer_side

    out = tmp_path / "faces.png"
    r = ok(stylize("--generator", generator_file, "--seeds", "0-4", pictures["stripes"], "-o", out, "--size", 32,
                   "--steps", 5, "--quiet"))
    assert "5 faces (seeds 0-4) at 32 px" in r.output and "features: random" in r.output
    grid = np.asarray(Image.open(out))
    cell = 32 + GRID_PAD
    assert grid.shape == (2 * cell + GRID_PAD, 5 * cell + GRID_PAD, 3)

    gen = load_generator_file(generator_file)
    faces = Sampler(gen, 5)(latents(range(5), 8))
    for k, face in enumerate(faces):
        x = GRID_PAD + k * cell
        top, bottom = grid[GRID_PAD:GRID_PAD + 32, x:x + 32], grid[cell + GRID_PAD:cell + GRID_PAD + 32, x:x + 32]
        np.testing.assert_array_equal(top, resize_longer_side(face, 32))  # the generated face, upscaled
        assert np.abs(bottom.astype(int) - top).mean() > 1  # and below it, changed by the style

    # Seeds pick faces: seed 3 alone is the fourth face of the grid above.
    ok(stylize("--generator", generator_file, "--seeds", "3", pictures["stripes"], "-o", tmp_path / "one.png",
               "--size", 32, "--steps", 5, "--quiet"))
    one = np.asarray(Image.open(tmp_path / "one.png"))
    x = GRID_PAD + 3 * cell
    np.testing.assert_array_equal(one[GRID_PAD:GRID_PAD + 32, GRID_PAD:GRID_PAD + 32],
                                  grid[GRID_PAD:GRID_PAD + 32, x:x + 32])


def test_the_identity_check_extension_point_counts_the_verifiers_verdicts(generator_file, pictures, tmp_path):
    """What the face-verification issue plugs in: a callable judging (original, stylised) pairs."""
    from dcgan_cli.gan.generator_io import load_generator_file
    from dcgan_cli.generate.sampling import Seeds
    from dcgan_cli.generate.stylize import StyleOptions, stylize_faces

    seen = {}

    def verifier(originals, styled):  # a stand-in rule, not an identity model: the darker half "verifies"
        seen["shapes"] = originals.shape, styled.shape
        # By rank, not against the median: an untrained generator's faces can tie in brightness.
        darker = set(np.argsort(originals.mean(axis=(1, 2, 3)), kind="stable")[:len(originals) // 2].tolist())
        return [i in darker for i in range(len(originals))]

    options = StyleOptions(size=32, steps=2)
    r = stylize_faces(load_generator_file(generator_file), Seeds.parse("0-5"), pictures["stripes"],
                      tmp_path / "g.png", options, verifier=verifier)
    assert seen["shapes"] == ((6, 32, 32, 3), (6, 32, 32, 3))
    assert r.verified == 3
    assert stylize_faces(load_generator_file(generator_file), Seeds.parse("0-1"), pictures["stripes"],
                         tmp_path / "h.png", options).verified is None  # no verifier: nothing claimed

    with pytest.raises(DcganError, match="2 verdicts for 6 faces"):
        stylize_faces(load_generator_file(generator_file), Seeds.parse("0-5"), pictures["stripes"],
                      tmp_path / "i.png", options, verifier=lambda o, s: [True, True])


def test_run_faces_come_from_the_runs_generator(tiny_run, pictures, tmp_path):
    """--run restores the run's (EMA) generator: its faces are the ones `dcgan sample` draws for the seeds."""
    from dcgan_cli.generate.stylize import resize_longer_side

    run = tiny_run  # EMA on: stylize and sample must both draw the EMA faces
    out = tmp_path / "faces.png"
    r = ok(stylize("--run", run, "--seeds", "2,5", pictures["stripes"], "-o", out, "--steps", 3, "--quiet"))
    assert "2 faces (seeds 2,5) at 64 px" in r.output  # a 16 px generator: upscaled to the 64 px minimum
    assert "Generating faces with" in r.output and "EMA weights" in r.output
    ok(runner.invoke(app, ["sample", "--run", str(run), "--seeds", "2,5", "--nrow", "2", str(tmp_path / "s.png")]))
    sampled, grid = np.asarray(Image.open(tmp_path / "s.png")), np.asarray(Image.open(out))
    for k in range(2):
        x, xs = GRID_PAD + k * (64 + GRID_PAD), GRID_PAD + k * (16 + GRID_PAD)
        face = sampled[GRID_PAD:GRID_PAD + 16, xs:xs + 16]
        np.testing.assert_array_equal(grid[GRID_PAD:GRID_PAD + 64, x:x + 64], resize_longer_side(face, 64))


def test_style_layer_weights_are_relative_and_parsed():
    from dcgan_cli.generate.stylize import build_features, parse_style_layers

    assert parse_style_layers("block1_conv1:2, block3_conv1") == (("block1_conv1", 2.0), ("block3_conv1", 1.0))
    f = build_features("random", style_layers=parse_style_layers("block1_conv1:3,block3_conv1:1"),
                       content_layer="block3_conv2")
    assert f.style_layers == (("block1_conv1", 0.75), ("block3_conv1", 0.25))
    assert f.content_layer == "block3_conv2"
    content, style = f(np.zeros((1, 32, 32, 3), np.float32))
    assert content.shape == (1, 8, 8, 128) and [s.shape[-1] for s in style] == [32, 128]
    for bad in ["block1_conv1:x", "conv1", "block1_conv1:-1"]:
        with pytest.raises(DcganError):
            parse_style_layers(bad)
