"""`dcgan studio`: the app served on 127.0.0.1 (a free port) and driven as its users drive it.

Through gradio_client, the way a script would: `draw` gives the bytes `dcgan sample` writes, a
brush mask painted on the photo reaches inpaint (the result is `dcgan inpaint --mask`'s, byte for
byte), a photo that is not an image gets the command's one line. Then once in a real browser
(Debian's chromium driven by Playwright, never a downloaded one): load the page, press Draw, see the
image, and check that the page fetched nothing from anywhere but the app.

The browser test also takes the screenshots of docs/studio.md: DCGAN_STUDIO_SCREENSHOTS=DIR saves
them into DIR, and DCGAN_STUDIO_RUN=RUN serves that run instead of the tiny one.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import dcgan_here

pytest.importorskip("gradio", reason="dcgan studio needs the ui extra: pip install 'dcgan-cli[ui]'")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    """The studio over the shared tiny run (read only: conftest checks nothing was written into it)."""
    from dcgan_cli.studio import actions, serve

    run = Path(os.environ.get("DCGAN_STUDIO_RUN") or tiny_run)
    studio = actions.Studio.open(run, run.parent, workdir=tmp_path_factory.mktemp("studio-work"))
    port = serve.free_port()
    demo = serve.launch(studio, "127.0.0.1", port, block=False, say=lambda m: None)
    yield studio, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(served, tmp_path_factory):
    from gradio_client import Client

    return Client(served[1], verbose=False, download_files=str(tmp_path_factory.mktemp("client-downloads")))


def test_draw_is_dcgan_sample_byte_for_byte(served, client, tmp_path):
    studio, _ = served
    r = dcgan_here("sample", "--run", studio.run, "--seeds", "7-9", "--individual", tmp_path / "cli",
                   "--truncation", "0.7")
    assert r.returncode == 0, r.stderr
    one, files = client.predict(7, 1, 0.7, api_name="/draw")
    assert Path(one).read_bytes() == (tmp_path / "cli/seed-0007.png").read_bytes()
    grid, files = client.predict(7, 3, 0.7, api_name="/draw")
    assert [Path(f).read_bytes() for f in files] == [(tmp_path / f"cli/seed-{s:04d}.png").read_bytes()
                                                     for s in (7, 8, 9)]
    assert Image.open(grid).size[0] > Image.open(one).size[0]  # the three in a grid
    other, _ = client.predict(8, 1, 0.7, api_name="/draw")
    assert Path(other).read_bytes() != Path(one).read_bytes()


def _paint(canvas: Path, out: Path, rows: slice, cols: slice) -> Path:
    """An RGBA brush layer over the canvas: opaque magenta where painted, transparent elsewhere."""
    w, h = Image.open(canvas).size
    layer = np.zeros((h, w, 4), np.uint8)
    layer[rows, cols] = (255, 0, 255, 255)
    Image.fromarray(layer, "RGBA").save(out)
    return out


def test_a_brush_mask_reaches_inpaint_as_dcgan_inpaint_does(served, client, image_folder, tmp_path):
    from gradio_client import handle_file

    studio, _ = served
    photo = sorted(image_folder.iterdir())[0]
    editor = client.predict(handle_file(photo), api_name="/photo")
    background = Path(editor["background"])
    k = Image.open(background).size[0] // 16  # the 16x16 crop, scaled up to paint on
    # Crop rows 4..9, cols 3..11 painted; a stroke over only a third of a crop pixel does not count.
    layer = _paint(background, tmp_path / "layer.png", slice(4 * k, 10 * k), slice(3 * k, 12 * k + k // 3))
    value = {"background": handle_file(background), "layers": [handle_file(layer)],
             "composite": handle_file(background)}
    result, used = client.predict(handle_file(photo), value, 3, 1, 5, api_name="/inpaint")
    hole = np.zeros((16, 16), bool)
    hole[4:10, 3:12] = True
    assert np.array_equal(np.asarray(Image.open(used))[..., 0] if np.asarray(Image.open(used)).ndim == 3
                          else np.asarray(Image.open(used)), np.where(hole, 255, 0))
    Image.fromarray(np.where(hole, 255, 0).astype(np.uint8)).save(tmp_path / "mask.png")
    r = dcgan_here("inpaint", photo, "--mask", tmp_path / "mask.png", "--run", studio.run, "--steps", "3",
                   "--restarts", "1", "--seed", "5", "-o", tmp_path / "cli", "--quiet")
    assert r.returncode == 0, r.stderr
    assert Path(result).read_bytes() == (tmp_path / "cli" / f"{photo.stem}.png").read_bytes()


def test_a_bad_upload_gets_the_commands_one_line(served, client, tmp_path):
    from gradio_client import handle_file

    studio, _ = served
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(bad), api_name="/photo")
    r = dcgan_here("inpaint", bad, "--mask-kind", "center", "--run", studio.run, "-o", tmp_path / "out")
    cli = r.stderr.strip().removeprefix("Error: ")
    assert "cannot read" in cli and len(r.stderr.strip().splitlines()) == 1, r.stderr
    app = str(caught.value).strip()
    assert "\n" not in app, app
    # The same line, but for the path: the app reads the upload from Gradio's cache.
    assert re.sub(r"\S*notes\.png", "PHOTO", app) == re.sub(r"\S*notes\.png", "PHOTO", cli), (app, cli)


def test_the_run_tab_shows_the_runs_own_files(served, client):
    studio, _ = served
    losses, quality, grid, config = client.predict(api_name="/run")
    assert config["config"]["latent_dim"] == studio.loaded.restored.config.latent_dim if "config" in config \
        else config["latent_dim"] == studio.loaded.restored.config.latent_dim
    assert Path(grid).read_bytes() == sorted((studio.run / "samples").glob("epoch-*.png"))[-1].read_bytes()
    epochs = sorted({row[0] for row in losses["data"]})
    assert epochs == [1, 2], losses


def _chromium_missing() -> str:
    if not CHROMIUM.exists():
        return f"no browser at {CHROMIUM}: apt-get install chromium (.ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install 'dcgan-cli[test]'"
    return ""


@pytest.mark.slow
@pytest.mark.subprocess  # Playwright's driver and chromium are processes
@pytest.mark.skipif(bool(_chromium_missing()), reason=_chromium_missing() or "-")
def test_in_a_real_browser_draw_shows_the_image(served, tmp_path):
    from playwright.sync_api import sync_playwright

    _, url = served
    shots = Path(os.environ.get("DCGAN_STUDIO_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(  # a new, empty profile
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 900})
        try:
            page = browser.new_page()
            page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
            page.goto(url, wait_until="networkidle")
            page.locator("#draw-button").click()
            image = page.locator("#draw-image img")
            image.wait_for(state="visible", timeout=60_000)
            page.wait_for_function("() => { const i = document.querySelector('#draw-image img');"
                                   " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            width = image.evaluate("i => i.naturalWidth")
            page.screenshot(path=str(shots / "studio-draw.png"), full_page=True)
        finally:
            browser.close()
    assert width > 16 * 4  # the default 16 images, in a grid
    assert not outside, f"the page fetched from outside the app: {outside[:5]}"
    assert (shots / "studio-draw.png").stat().st_size > 10_000
    if shots != tmp_path:
        shutil.copy(shots / "studio-draw.png", tmp_path / "studio-draw.png")
