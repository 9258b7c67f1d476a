"""Face repair: `dcgan project`, `dcgan inpaint`, `sample --latents`, Poisson blending, the bench's scores.

The models are the shared tiny run (conftest.tiny_run: 16x16 RGB, latent 8, EMA on,
its data centre-cropped); the photos are conftest's face-like images, cropped by
the commands as the run's data was. Searches are a few steps: these tests check
the plumbing and the arithmetic, `dcgan bench --parts repair` the quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import ok, one_line_error, snapshot
from dcgan_cli.cli import app
from dcgan_cli.generate.repair import (_neighbour_sum, check_mask, context_weights, make_masks, poisson_blend)

runner = CliRunner()
SIZE, NZ = 16, 8
FAST = ["--steps", "5", "--restarts", "2", "--batch-size", "8", "--quiet"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path):
    return np.asarray(Image.open(path))


# ----------------------------------------------------------------------------
# Poisson blending and the context weights: NumPy checks


def test_poisson_blend_reproduces_a_harmonic_function_from_its_boundary():
    """A linear ramp is harmonic: with a flat source (no gradients) the hole is filled with the ramp itself."""
    yy, xx = np.mgrid[0:12, 0:10].astype(np.float64)
    ramp = (0.3 * xx - 0.2 * yy + 1.0)[None, :, :, None]
    hole = np.zeros((1, 12, 10), bool)
    hole[0, 3:9, 2:7] = True
    target = np.where(hole[..., None], 0.0, ramp)  # nothing of the ramp is known inside the hole
    out = poisson_blend(np.zeros_like(ramp), target, hole)
    np.testing.assert_allclose(out, ramp, atol=1e-6)


def test_poisson_blend_keeps_the_sources_laplacian_in_the_hole_and_the_target_outside():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(2, 3, 9, 11, 2))
    hole = np.zeros((3, 9, 11), bool)
    hole[0, 2:6, 3:8] = True
    hole[1, 0:4, 0:3] = True  # touches the image's edge: fewer neighbours there
    hole[2] = rng.random((9, 11)) < 0.5
    out = poisson_blend(source, target, hole)
    count = _neighbour_sum(np.ones_like(source))
    lap_out, lap_src = count * out - _neighbour_sum(out), count * source - _neighbour_sum(source)
    h = np.broadcast_to(hole[..., None], source.shape)
    np.testing.assert_allclose(lap_out[h], lap_src[h], atol=1e-6)
    np.testing.assert_array_equal(out[~h], target[~h])


def test_context_weights_are_the_share_of_unknown_pixels_in_each_known_pixels_window():
    hole = np.zeros((1, 10, 10), bool)
    hole[0, 4:6, 4:6] = True
    w = context_weights(hole, window=3)
    for y in range(10):
        for x in range(10):
            if hole[0, y, x]:
                assert w[0, y, x] == 0
                continue
            win = hole[0, max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            assert w[0, y, x] == pytest.approx(win.mean())
    assert w[0, 0, 0] == 0 and w[0, 3, 3] == pytest.approx(1 / 9) and w[0, 4, 3] == pytest.approx(2 / 9)


def test_masks_center_random_eyes_and_the_refusals():
    assert make_masks(2, 16, kind="center")[0].sum() == 64  # the middle quarter of the area
    random = make_masks(3, 16, kind="random", seed=5)
    assert 0.6 < random.mean() < 0.95 and not np.array_equal(random[0], random[1])
    np.testing.assert_array_equal(random, make_masks(3, 16, kind="random", seed=5))
    assert make_masks(1, 16, kind="eyes")[0, 7].any()
    assert make_masks(1, 16, box="2,3,4,5")[0].sum() == 20
    from dcgan_cli.errors import DcganError

    with pytest.raises(DcganError, match="marks no pixel"):
        check_mask(np.zeros((4, 4), bool), "x")
    with pytest.raises(DcganError, match="every pixel"):
        check_mask(np.ones((4, 4), bool), "x")
    with pytest.raises(DcganError, match="reaches past"):
        make_masks(1, 16, box="10,10,8,8")


def test_hole_scores_and_the_baselines():
    from dcgan_cli.bench.repair import average_fill, hole_scores, mean_fill

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    holes = make_masks(2, 16, kind="center")
    filled = mean_fill(real, holes)
    np.testing.assert_array_equal(filled[~holes], real[~holes])
    assert len(np.unique(filled[0][holes[0]])) == 1
    psnr, ssim = hole_scores(real, real, holes)
    assert psnr > 100 and ssim == pytest.approx(1.0)  # identical: the MSE floor of 1e-10
    worse = hole_scores(filled, real, holes)
    assert worse[0] < 20 and worse[1] < 0.5
    training = np.stack([np.full((16, 16, 1), 10, np.uint8), np.full((16, 16, 1), 20, np.uint8)])
    average = average_fill(real, holes, training)
    np.testing.assert_array_equal(average[~holes], real[~holes])
    assert (average[holes] == 15).all()


def test_the_docs_figure_has_a_row_per_face_masked_ours_baseline_real(tmp_path):
    from dcgan_cli.images import GRID_PAD
    from dcgan_cli.bench.repair import mean_fill, write_figure

    real = np.random.default_rng(1).integers(1, 256, (3, 8, 8, 1), dtype=np.uint8)
    holes = make_masks(3, 8, kind="center")
    ours = np.full_like(real, 7)
    write_figure(tmp_path / "f.png", real, {"holes": holes, "ours": ours, "mean": mean_fill(real, holes)}, n=2,
                 scale=2)
    fig = pixels(tmp_path / "f.png")
    cell = 16 + GRID_PAD
    assert fig.shape[:2] == (2 * cell + GRID_PAD, 4 * cell + GRID_PAD)
    row1 = [fig[cell + GRID_PAD:2 * cell, GRID_PAD + k * cell:(k + 1) * cell] for k in range(4)]
    assert (row1[0][4:12, 4:12] == 0).all() and (row1[1] == 7).all()  # the hole shown black; ours
    np.testing.assert_array_equal(row1[3][::2, ::2], real[1, :, :, 0])


# ----------------------------------------------------------------------------
# the commands on the tiny run


@pytest.fixture(scope="module")
def photos(image_folder):
    return sorted(image_folder.iterdir())[:3]


def test_project_writes_images_latents_and_losses_and_the_same_seed_gives_the_same_bytes(tiny_run, photos, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ok(cli("project", *photos, "--run", tiny_run, "-o", a, *FAST))
    ok(cli("project", *photos, "--run", tiny_run, "-o", b, *FAST))
    assert snapshot(a) == snapshot(b)
    record = json.loads((a / "project.json").read_text())
    assert [r["image"] for r in record["photos"]] == [p.stem + ".png" for p in photos]
    assert record["crop"] == "center" and record["checkpoint"] == "ckpt-6"
    assert all(np.isfinite(r["loss"]["total"]) and r["loss"]["pixel"] > 0 for r in record["photos"])
    z = np.load(a / "latents.npy")
    assert z.shape == (3, NZ) and z.dtype == np.float32
    # another seed starts elsewhere
    ok(cli("project", *photos, "--run", tiny_run, "-o", tmp_path / "c", *FAST, "--seed", "1"))
    assert not np.array_equal(np.load(tmp_path / "c/latents.npy"), z)
    # refuses to overwrite without --force
    one_line_error(cli("project", *photos, "--run", tiny_run, "-o", a, *FAST), "already exists", "--force")


@pytest.mark.slow
@pytest.mark.subprocess
def test_latents_draw_the_same_faces_again_in_a_fresh_process_and_through_sample(tiny_run, photos, tmp_path):
    out = tmp_path / "p"
    ok(cli("project", *photos, "--run", tiny_run, "-o", out, *FAST))
    # sample --latents: the grid's cells are the projections, byte for byte
    ok(cli("sample", tmp_path / "grid.png", "--run", tiny_run, "--latents", out / "latents.npy", "--nrow", "3",
           "--individual", tmp_path / "each"))
    for i, p in enumerate(photos):
        np.testing.assert_array_equal(pixels(tmp_path / "each" / f"latent-{i:04d}.png"), pixels(out / f"{p.stem}.png"))
    # without this package: numpy's loader and the run's generator.keras (the same EMA weights)
    code = textwrap.dedent(f"""
        import sys, numpy as np, keras
        z = np.load({str(out / 'latents.npy')!r})
        g = keras.saving.load_model({str(tiny_run / 'generator.keras')!r}, compile=False)
        x = np.clip(np.rint((np.asarray(g(z, training=False)) + 1) * 127.5), 0, 255).astype(np.uint8)
        np.save({str(tmp_path / 'fresh.npy')!r}, x)
        assert "dcgan_cli" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = np.load(tmp_path / "fresh.npy")
    for i, p in enumerate(photos):  # another batch shape: at most one level apart (oneDNN's kernels)
        assert np.abs(fresh[i].astype(int) - pixels(out / f"{p.stem}.png").reshape(fresh[i].shape)).max() <= 1


def test_inpaint_keeps_the_known_pixels_fills_the_hole_and_repeats_itself(tiny_run, photos, tmp_path):
    from dcgan_cli.generate.repair import CropRecipe, load_photos

    cropped = load_photos(photos, CropRecipe("center", 0, SIZE, 3))
    for kind in ("center", "random"):
        a, b = tmp_path / f"{kind}-a", tmp_path / f"{kind}-b"
        ok(cli("inpaint", *photos, "--mask-kind", kind, "--run", tiny_run, "-o", a, *FAST))
        ok(cli("inpaint", *photos, "--mask-kind", kind, "--run", tiny_run, "-o", b, *FAST))
        assert snapshot(a) == snapshot(b)
        holes = make_masks(len(photos), SIZE, kind=kind, seed=0)
        for i, p in enumerate(photos):
            out = pixels(a / f"{p.stem}.png")
            np.testing.assert_array_equal(out[~holes[i]], cropped[i][~holes[i]])
            assert not np.array_equal(out[holes[i]], cropped[i][holes[i]])
        record = json.loads((a / "inpaint.json").read_text())
        assert record["settings"]["mask"] == kind and set(record["photos"][0]["loss"]) == {"total", "context", "prior", "realism"}


def test_inpaint_with_a_mask_file_matches_the_same_box(tiny_run, photos, tmp_path):
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[4:10, 3:12] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    ok(cli("inpaint", photos[0], "--mask", tmp_path / "mask.png", "--run", tiny_run, "-o", tmp_path / "m", *FAST))
    ok(cli("inpaint", photos[0], "--box", "3,4,9,6", "--run", tiny_run, "-o", tmp_path / "b", *FAST))
    assert (tmp_path / "m" / f"{photos[0].stem}.png").read_bytes() == (tmp_path / "b" / f"{photos[0].stem}.png").read_bytes()


def test_crop_face_runs_the_real_detector(tiny_run, tmp_path):
    """A real face (lfw_subset) is found and aligned; the commands take it at the run's size."""
    pytest.importorskip("mtcnn")
    from skimage.data import lfw_subset

    face = np.round(lfw_subset()[0] * 255).astype(np.uint8)
    Image.fromarray(face).resize((100, 100), Image.Resampling.BICUBIC).save(tmp_path / "face.png")
    ok(cli("project", tmp_path / "face.png", "--crop", "face", "--run", tiny_run, "-o", tmp_path / "out", *FAST))
    assert pixels(tmp_path / "out/face.png").shape == (SIZE, SIZE, 3)
    assert json.loads((tmp_path / "out/project.json").read_text())["crop"] == "face"


def test_refusals_name_the_fix_and_write_nothing(tiny_run, photos, tmp_path):
    one_line_error(cli("inpaint", photos[0], "--run", tiny_run, "-o", tmp_path / "o"), "--mask", code=2)
    one_line_error(cli("inpaint", photos[0], "--box", "1,2", "--run", tiny_run, "-o", tmp_path / "o"), "x,y,w,h",
                   code=2)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    one_line_error(cli("inpaint", photos[0], "--mask", tmp_path / "small.png", "--run", tiny_run, "-o",
                       tmp_path / "o", *FAST), "draw it at 16x16")
    np.save(tmp_path / "z.npy", np.zeros((2, NZ + 1), np.float32))
    one_line_error(cli("sample", tmp_path / "g.png", "--run", tiny_run, "--latents", tmp_path / "z.npy"),
                   f"takes {NZ}-dim")
    one_line_error(cli("sample", tmp_path / "g.png", "--run", tiny_run, "--latents", tmp_path / "z.npy", "--seed",
                       "3"), "--latents", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png", "z.npy"]
