"""`dcgan sample` and `dcgan export` on one real tiny trained run.

The run (16x16 RGB, latent 8, EMA on) is trained once per session; every test
samples from it through the library or the CLI, as a user would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import ok, one_line_error
from dcgan_cli.cli import app
from dcgan_cli.errors import DcganError
from dcgan_cli.images import GRID_PAD, grid_shape, make_grid
from dcgan_cli.generate.sampling import Seeds, latents, seed_file_name, slerp, truncation_threshold, walk_latents

runner = CliRunner()
SIZE, NZ = 16, 8


@pytest.fixture(scope="session")
def trained(tiny_run):
    """The shared finished tiny run (conftest.tiny_run: EMA on, latent NZ, alone in its runs dir); only read."""
    assert json.loads((tiny_run / "config.json").read_text())["latent_dim"] == NZ
    return tiny_run


@pytest.fixture(scope="session")
def sampler(trained):
    from dcgan_cli.gan.generator_io import restore
    from dcgan_cli.generate.sampling import Sampler

    return Sampler(restore(trained).model, batch_size=8)


def sample(*args):
    result = runner.invoke(app, ["sample", *map(str, args)])
    return result


def pixels(path):
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------
# seeds, latents, interpolation: the pure parts


def test_seed_lists_parse_ranges_and_lists_in_order():
    assert list(Seeds.parse("0-3,120, 7 ,200-201")) == [0, 1, 2, 3, 120, 7, 200, 201]
    assert len(Seeds.parse("0-999999")) == 1_000_000  # kept as a range, not a list
    assert str(Seeds.parse("0-99,120,200-210")) == "0-99,120,200-210"
    for bad in ["", "a", "3-", "-3", "5-2", "1,,2", "1.5"]:
        with pytest.raises(DcganError):
            Seeds.parse(bad)


def test_a_latent_depends_on_its_seed_only():
    alone = latents([7], NZ)
    among = latents(range(0, 20), NZ)
    assert np.array_equal(alone[0], among[7])
    assert latents([7], NZ).dtype == np.float32


def test_truncation_keeps_components_inside_the_band_and_psi_1_changes_nothing():
    z = latents(range(200), 64)
    assert np.array_equal(latents(range(200), 64, truncation=1.0), z)
    for psi in (0.9, 0.5, 0.1):
        t = truncation_threshold(psi)
        zt = latents(range(200), 64, truncation=psi)
        assert np.abs(zt).max() <= t + 1e-6
        inside = np.abs(z) <= t
        assert np.array_equal(zt[inside], z[inside]), "components already inside the band are kept"
    # psi is the share of the normal's mass kept: about 95% inside +-1.96.
    assert truncation_threshold(0.95) == pytest.approx(1.959964, abs=1e-5)
    # Less psi, less spread: variety traded for typicality.
    assert latents(range(200), 64, truncation=0.5).std() < z.std()
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(DcganError):
            latents([0], 8, truncation=bad)


def test_slerp_ends_at_its_keys_and_the_walk_closes_its_loop():
    a, b = latents([1, 2], 64)
    assert np.allclose(slerp(a, b, 0.0), a, atol=1e-6) and np.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    # On the arc the norm stays between the keys' norms; a straight line would dip well below.
    assert min(np.linalg.norm(a), np.linalg.norm(b)) - 1e-3 <= np.linalg.norm(mid)
    assert np.linalg.norm((a + b) / 2) < np.linalg.norm(mid)
    keys = latents([1, 2, 3], 64)
    walk = walk_latents(keys, 4, 0, 12)
    assert walk.shape == (12, 64)
    assert np.allclose(walk[0], keys[0]) and np.allclose(walk[4], keys[1]) and np.allclose(walk[8], keys[2])
    # The last frame is one step before the first key again: the GIF loops without a jump.
    assert np.allclose(walk[11], slerp(keys[2], keys[0], 0.75))


def test_grid_shape_is_near_square_or_follows_nrow():
    assert [grid_shape(n) for n in (1, 2, 4, 5, 10, 16, 17)] == [(1, 1), (1, 2), (2, 2), (2, 3), (3, 4), (4, 4),
                                                                 (4, 5)]
    assert grid_shape(10, nrow=5) == (2, 5) and grid_shape(3, nrow=8) == (1, 3)


# ----------------------------------------------------------------------------
# reproducibility


def test_same_seed_same_model_gives_identical_bytes(trained, tmp_path):
    for ext in (".png", ".jpg", ".webp"):
        a, b = tmp_path / f"a{ext}", tmp_path / f"b{ext}"
        ok(sample("-n", 9, a, "--run", trained, "--seed", 3))
        ok(sample("-n", 9, b, "--run", trained, "--seed", 3))
        assert a.read_bytes() == b.read_bytes(), ext
    ok(sample("-n", 9, tmp_path / "c.png", "--run", trained, "--seed", 4))
    assert (tmp_path / "c.png").read_bytes() != (tmp_path / "a.png").read_bytes()


def test_seed_7_is_the_same_face_alone_and_inside_a_range(trained, tmp_path):
    ok(sample("--seeds", 7, "--individual", tmp_path / "alone", "--run", trained))
    # In the range, seed 7 sits at another position of another batch, with other neighbours.
    ok(sample("--seeds", "3-12,40,99", "--individual", tmp_path / "range", "--run", trained, "--batch-size", 4))
    ok(sample("-n", 30, tmp_path / "grid.png", "--individual", tmp_path / "count", "--run", trained))
    name = seed_file_name(7)
    assert name == "seed-0007.png"
    seven = pixels(tmp_path / "alone" / name)
    assert seven.shape == (SIZE, SIZE, 3) and seven.std() > 0
    assert np.array_equal(seven, pixels(tmp_path / "range" / name))
    assert np.array_equal(seven, pixels(tmp_path / "count" / name))
    assert sorted(p.name for p in (tmp_path / "range").iterdir()) == [seed_file_name(s) for s in [*range(3, 13), 40, 99]]
    # And the grid's cell 7 is that same image.
    rows, cols = grid_shape(30)
    r, c = divmod(7, cols)
    y, x = GRID_PAD + r * (SIZE + GRID_PAD), GRID_PAD + c * (SIZE + GRID_PAD)
    assert np.array_equal(pixels(tmp_path / "grid.png")[y:y + SIZE, x:x + SIZE], seven)


def test_truncated_seeds_are_reproducible_alone_and_in_a_range(trained, tmp_path):
    ok(sample("--seeds", 5, "--truncation", 0.5, "--individual", tmp_path / "a", "--run", trained))
    ok(sample("--seeds", "0-9", "--truncation", 0.5, "--individual", tmp_path / "b", "--run", trained))
    ok(sample("--seeds", 5, "--individual", tmp_path / "c", "--run", trained))
    name = seed_file_name(5)
    assert np.array_equal(pixels(tmp_path / "a" / name), pixels(tmp_path / "b" / name))
    assert not np.array_equal(pixels(tmp_path / "a" / name), pixels(tmp_path / "c" / name))


def test_batch_composition_does_not_change_pixels(sampler):
    """A latent's image is exact whatever shares its batch and wherever it sits (BN in inference mode)."""
    z = latents([7], NZ)
    alone = sampler(z)[0]
    others = latents(range(100, 140), NZ)
    for pos in (0, 3, 7, 12, 39):  # positions in the first, second and last batch of 8
        mixed = np.insert(others, pos, z[0], axis=0)
        assert np.array_equal(sampler(mixed)[pos], alone), pos
    # And the floats themselves, through the fixed-shape forward pass.
    batch = np.zeros((sampler.batch_size, NZ), np.float32)
    batch[0] = z[0]
    full = np.concatenate([z, others[:sampler.batch_size - 1]])
    assert np.array_equal(sampler._forward(batch).numpy()[0], sampler._forward(full).numpy()[0])


def test_ema_weights_by_default_and_raw_ones_with_no_ema(trained, tmp_path):
    r = ok(sample("-n", 4, tmp_path / "ema.png", "--run", trained))
    assert "EMA weights" in r.stderr
    r = ok(sample("-n", 4, tmp_path / "raw.png", "--run", trained, "--no-ema"))
    assert "raw weights" in r.stderr
    assert not np.array_equal(pixels(tmp_path / "ema.png"), pixels(tmp_path / "raw.png"))


# ----------------------------------------------------------------------------
# grids, files, walks


@pytest.mark.parametrize("n,nrow", [(1, None), (5, None), (10, None), (16, None), (10, 5), (3, 8)])
def test_grid_geometry(trained, tmp_path, n, nrow):
    out = tmp_path / "g.png"
    ok(sample("-n", n, out, "--run", trained, *(["--nrow", nrow] if nrow else [])))
    rows, cols = grid_shape(n, nrow)
    img = pixels(out)
    assert img.shape == (rows * (SIZE + GRID_PAD) + GRID_PAD, cols * (SIZE + GRID_PAD) + GRID_PAD, 3)
    # Thin white padding all round, and empty cells of the last row left blank.
    assert (img[:GRID_PAD] == 255).all() and (img[:, :GRID_PAD] == 255).all()
    if rows * cols > n:
        y = GRID_PAD + (rows - 1) * (SIZE + GRID_PAD)
        assert (img[y:y + SIZE, -(SIZE + GRID_PAD):] == 255).all()


def test_grids_are_filled_batch_by_batch_like_make_grid(sampler, tmp_path):
    from dcgan_cli.generate.sampling import sample as run_sample

    seeds = Seeds.parse("0-20")
    n = run_sample(sampler, seeds, tmp_path / "g.png", nrow=6)
    assert n == 21
    expected = make_grid(sampler(latents(seeds, NZ)), nrow=6)
    assert np.array_equal(pixels(tmp_path / "g.png"), expected)


def test_many_images_stream_to_files_with_bounded_memory(sampler, tmp_path):
    """1,000 files, yet the Python heap never holds more than about one batch of images."""
    import tracemalloc

    from dcgan_cli.generate.sampling import sample as run_sample

    seen = []
    tracemalloc.start()
    try:
        n = run_sample(sampler, Seeds.count(0, 1000), individual=tmp_path / "many", on_progress=seen.append)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 1000 and sum(seen) == 1000 and len(seen) == 125  # batches of 8, reported one by one
    assert len(list((tmp_path / "many").glob("seed-*.png"))) == 1000
    all_floats = 1000 * SIZE * SIZE * 3 * 4
    assert peak < all_floats / 4, f"peak {peak} bytes: the images are being held, not streamed"


def test_interpolation_writes_a_looping_gif_with_k_times_f_frames(trained, tmp_path):
    out = tmp_path / "walk.gif"
    r = ok(sample("--interpolate", 3, "--frames", 5, out, "--run", trained, "--seed", 10))
    assert "15 frames" in r.output
    gif = Image.open(out)
    assert gif.n_frames == 15 and gif.info["loop"] == 0 and gif.size == (SIZE, SIZE)
    again = tmp_path / "again.gif"
    ok(sample("--interpolate", 3, "--frames", 5, again, "--run", trained, "--seeds", "10-12"))
    assert again.read_bytes() == out.read_bytes()


def test_a_run_can_be_named_by_its_keras_file(trained, tmp_path):
    ok(sample("-n", 6, tmp_path / "run.png", "--run", trained))
    # generator.keras holds the sampler (EMA) weights: the same pixels as the checkpoint.
    ok(sample("-n", 6, tmp_path / "file.png", "--generator", trained / "generator.keras"))
    assert np.array_equal(pixels(tmp_path / "run.png"), pixels(tmp_path / "file.png"))


def test_without_run_the_newest_run_is_used_and_named(trained, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "00000-old")
    shutil.copytree(trained, runs / "00007-newest")
    r = ok(sample("-n", 4, tmp_path / "o.png", "--runs-dir", runs))
    assert "newest run" in r.stderr and "00007-newest" in r.stderr
    assert "00007-newest" not in r.stdout and "o.png" in r.stdout


# ----------------------------------------------------------------------------
# export


@pytest.mark.slow
@pytest.mark.subprocess
def test_savedmodel_export_serves_uint8_images_without_this_package(trained, sampler, tmp_path):
    out = tmp_path / "served"
    r = runner.invoke(app, ["export", str(trained), str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "saved_model.pb").is_file() and "SavedModel" in r.output
    z = latents(range(5), NZ)
    np.save(tmp_path / "z.npy", z)
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import tensorflow as tf
        m = tf.saved_model.load({str(out)!r})
        z = np.load({str(tmp_path / 'z.npy')!r})
        sig = m.signatures["serving_default"]
        images = sig(latent=tf.constant(z))["images"].numpy()
        direct = m(z)["images"].numpy()
        assert "dcgan_cli" not in sys.modules
        print(json.dumps(dict(dtype=str(images.dtype), shape=list(images.shape), same=bool((images == direct).all()),
                              latent_dim=int(m.latent_dim.numpy()), image_shape=m.image_shape.numpy().tolist(),
                              inputs=str(sig.structured_input_signature), pixels=images.tolist())))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["dtype"] == "uint8" and got["shape"] == [5, SIZE, SIZE, 3] and got["same"]
    assert got["latent_dim"] == NZ and got["image_shape"] == [SIZE, SIZE, 3]
    assert "latent" in got["inputs"] and "None, 8" in got["inputs"]
    served = np.array(got["pixels"], dtype=np.int16)
    # Graph and batch shape differ from `dcgan sample`; the images agree to one level at most.
    assert np.abs(served - sampler(z)).max() <= 1


@pytest.mark.slow
@pytest.mark.subprocess
def test_keras_export_loads_with_plain_keras_and_matches_the_run(trained, tmp_path):
    out = tmp_path / "g.keras"
    r = runner.invoke(app, ["export", str(trained), str(out), "--format", "keras", "--no-ema"])
    assert r.exit_code == 0, r.output
    # A fresh process that never imports this package (so none of its layers are registered).
    code = textwrap.dedent(f"""
        import sys, keras
        m = keras.saving.load_model({str(out)!r})
        assert "dcgan_cli" not in sys.modules
        print(m.input_shape, m.output_shape)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"(None, {NZ}) (None, {SIZE}, {SIZE}, 3)"
    ok(sample("-n", 4, tmp_path / "a.png", "--generator", out))
    ok(sample("-n", 4, tmp_path / "b.png", "--run", trained, "--no-ema"))
    assert np.array_equal(pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png"))


def test_export_never_replaces_silently(trained, tmp_path):
    out = tmp_path / "g.keras"
    assert runner.invoke(app, ["export", str(trained), str(out)]).exit_code == 0
    before = out.read_bytes()
    one_line_error(runner.invoke(app, ["export", str(trained), str(out)]), "already exists", "--force")
    assert out.read_bytes() == before
    assert runner.invoke(app, ["export", str(trained), str(out), "--force", "--no-ema"]).exit_code == 0
    # A folder that is not a SavedModel is someone's data: not even --force replaces it.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(runner.invoke(app, ["export", str(trained), str(mine), "--force"]), "not a savedmodel export")
    assert (mine / "notes.txt").read_text() == "keep me"
    # --format keras needs a .keras name; an unknown format is a usage error.
    one_line_error(runner.invoke(app, ["export", str(trained), str(tmp_path / "g.h5"), "--format", "keras"]), ".keras")
    assert runner.invoke(app, ["export", str(trained), str(tmp_path / "x"), "--format", "onnx"]).exit_code == 2


@pytest.mark.subprocess
def test_export_help_has_an_example_and_loads_no_tensorflow():
    code = ("import sys; from dcgan_cli.cli import app; sys.argv=['dcgan','export','--help']\n"
            "try: app()\nexcept SystemExit as e: assert e.code in (0, None), e.code\n"
            "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Example: dcgan export" in out and "TF-NOT-LOADED" in out


# ----------------------------------------------------------------------------
# errors: one line, nothing written


def test_zero_images_is_a_usage_error(trained, tmp_path):
    r = sample("-n", 0, tmp_path / "o.png", "--run", trained)
    assert r.exit_code == 2 and not (tmp_path / "o.png").exists()


def test_an_unknown_extension_is_a_usage_error_listing_the_allowed_ones(trained, tmp_path):
    for name in ("o.bmp", "o.gif", "o"):
        r = sample("-n", 4, tmp_path / name, "--run", trained)
        assert r.exit_code == 2, r.output
        assert all(ext in r.output for ext in (".png", ".jpg", ".webp")), r.output
    assert "--interpolate" in sample("-n", 4, tmp_path / "o.gif", "--run", trained).output
    r = sample("--interpolate", 3, tmp_path / "walk.png", "--run", trained)
    assert r.exit_code == 2 and ".gif" in r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["--seeds", "9-2"], ["--seeds", "x"], ["--seed", "1", "--seeds", "1-3"], ["-n", "5", "--seeds", "0-9"],
    ["--truncation", "0"], ["--truncation", "1.2"], ["--frames", "4"], ["--interpolate", "1"],
    ["--generator", "g.keras", "--no-ema"],
])
def test_contradictory_or_malformed_options_are_usage_errors(trained, tmp_path, args):
    r = sample(tmp_path / "o.png", "--run" if "--generator" not in args else "--runs-dir", trained, *args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and not (tmp_path / "o.png").exists()


def test_a_run_without_checkpoints_is_a_one_line_error(trained, tmp_path):
    run = tmp_path / "00001-fresh"
    run.mkdir()
    shutil.copy(trained / "config.json", run / "config.json")
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--run", run), "no checkpoint", "dcgan train --resume")
    one_line_error(runner.invoke(app, ["export", str(run), str(tmp_path / "g.keras")]), "no checkpoint")
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--run", tmp_path / "nowhere"), "not a run directory")
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "g.keras").exists()


def test_a_model_file_of_the_wrong_kind_is_a_one_line_error(tmp_path):
    from dcgan_cli.gan.model import build_discriminator

    disc = tmp_path / "discriminator.keras"
    build_discriminator(SIZE, 3, 8).save(disc)
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--generator", disc), "is not a generator")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"definitely not a zip archive")
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--generator", junk), "cannot read", "Keras model")
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--generator", text), "not a .keras file")
    one_line_error(sample("-n", 4, tmp_path / "o.png", "--generator", tmp_path / "absent.keras"), "no model file")
    assert not (tmp_path / "o.png").exists()


def test_an_unwritable_output_fails_before_any_work_and_keeps_what_was_there(trained, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # Tests may run as root, so "unwritable" is a path through a regular file.
    one_line_error(sample("-n", 4, blocker / "o.png", "--run", trained), "cannot write")
    one_line_error(sample("-n", 4, "--individual", blocker / "faces", "--run", trained), "cannot write")
    one_line_error(sample("--interpolate", 2, "--frames", 2, blocker / "w.gif", "--run", trained), "cannot write")
    one_line_error(runner.invoke(app, ["export", str(trained), str(blocker / "sm")]), "cannot write")
    (tmp_path / "folder.png").mkdir()
    one_line_error(sample("-n", 4, tmp_path / "folder.png", "--run", trained), "is a directory")
    assert blocker.read_text() == "not a folder"
    # A failing sample leaves an existing output as it was, and no temp files behind.
    out = tmp_path / "keep.png"
    out.write_bytes(b"old grid")
    one_line_error(sample("-n", 4, out, "--generator", tmp_path / "absent.keras", "--force"), "no model file")
    assert out.read_bytes() == b"old grid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "folder.png", "keep.png"]


def test_a_grid_too_big_for_its_format_is_refused_before_generating(trained, tmp_path):
    # 1,000,000 16px images: 18,002 px a side, past WebP's 16,383 limit. Refused in well under a second of work.
    line = one_line_error(sample("-n", 1_000_000, tmp_path / "o.webp", "--run", trained), "WEBP allows at most")
    assert "--individual" in line
    assert not (tmp_path / "o.webp").exists()


def test_outputs_get_the_usual_permissions_not_private_temp_ones(trained, tmp_path):
    """Files appear via temp names (atomic); they must still end up with the umask's mode, like any file."""
    import os

    umask = os.umask(0o022)
    try:
        ok(sample("-n", 4, tmp_path / "o.png", "--run", trained))
        assert runner.invoke(app, ["export", str(trained), str(tmp_path / "sm")]).exit_code == 0
    finally:
        os.umask(umask)
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "sm").stat().st_mode & 0o777 == 0o755
