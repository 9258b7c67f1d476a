"""The studio's Gradio Blocks: one function per tab, each tab shown only when the run supports it.

Every button is an event with an `api_name` (draw, walk, photo, inpaint, project, verify, run), so
`gradio_client` and the tests call exactly what a click calls. Handlers are thin: they call
`actions`, turn a `DcganError` into `gr.Error` with the same one line the command prints, and
report long work through `gr.Progress`.

A new tab is one entry of `TABS`: (label, supports(studio) -> bool, build(studio)). The attribute
editor (Edit: sliders per direction, a class choice for a conditional run) goes there, gated on the
run having directions or labels.
"""

from __future__ import annotations

import functools
from typing import Callable

from dcgan_cli.errors import DcganError
from dcgan_cli.generate import repair, search
from dcgan_cli.studio import actions
from dcgan_cli.studio.actions import Studio

REFRESH_SECONDS = 5.0  # the Run tab's refresh while the run trains


def _gr():
    import gradio as gr

    return gr


def _one_line(f: Callable) -> Callable:
    """Run a handler; a DcganError reaches the page (and gradio_client) as its one line."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except DcganError as e:
            raise _gr().Error(str(e), print_exception=False) from None

    return wrapper


def _progress(progress, unit: str):
    return lambda done, total: progress((done, total), unit=unit)


# ----------------------------------------------------------------------------
# the tabs


def draw_tab(studio: Studio) -> None:
    gr = _gr()
    with gr.Row():
        seed = gr.Number(value=0, precision=0, label="Seed", info="Image k uses seed SEED+k (as dcgan sample --seed)")
        count = gr.Slider(1, actions.MAX_DRAW, value=16, step=1, label="Count")
        truncation = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Truncation psi",
                               info="1: no truncation; lower: more typical faces")
    button = gr.Button("Draw", variant="primary", elem_id="draw-button")
    image = gr.Image(label="Grid", format="png", type="filepath", interactive=False, elem_id="draw-image",
                     buttons=["download"], height=420, elem_classes="pixels")
    with gr.Accordion("Each image (seed-SSSS.png, as dcgan sample --individual)", open=False):
        files = gr.File(label="Downloads", file_count="multiple")

    @_one_line
    def draw(seed, count, truncation, progress=gr.Progress()):
        shown, pngs = actions.draw(studio, seed, count, truncation, _progress(progress, "images"))
        return str(shown), [str(p) for p in pngs]

    button.click(draw, [seed, count, truncation], [image, files], api_name="draw")


def walk_tab(studio: Studio) -> None:
    gr = _gr()
    with gr.Row():
        a = gr.Number(value=0, precision=0, label="Seed A")
        b = gr.Number(value=1, precision=0, label="Seed B")
        frames = gr.Slider(2, actions.MAX_FRAMES, value=24, step=1, label="Frames per leg")
        truncation = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Truncation psi")
    button = gr.Button("Walk", variant="primary")
    gif = gr.Image(label="A looping walk (A to B and back)", type="filepath", format="gif", interactive=False,
                   height=320, elem_classes="pixels", buttons=["download"])

    @_one_line
    def walk(a, b, frames, truncation, progress=gr.Progress()):
        return str(actions.walk(studio, a, b, frames, truncation, _progress(progress, "frames")))

    button.click(walk, [a, b, frames, truncation], gif, api_name="walk")


def repair_tab(studio: Studio) -> None:
    gr = _gr()
    recipe = studio.crop()
    gr.Markdown(f"Photos are cropped as the run's data was ({recipe.crop}, {recipe.size}x{recipe.size}). "
                f"Paint over what is missing, then Inpaint; or Project to find the closest generated face.")
    with gr.Row():
        photo = gr.File(label="Photo", file_types=["image"], type="filepath")
        editor = gr.ImageMask(label="Paint the hole", type="numpy", sources=(), format="png", transforms=(),
                              brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed", default_size=24))
    with gr.Accordion("Search", open=False):
        steps = gr.Slider(1, 2000, value=search.DEFAULT_STEPS, step=1, label="Steps")
        restarts = gr.Slider(1, 16, value=search.DEFAULT_RESTARTS, step=1, label="Restarts")
        seed = gr.Number(value=0, precision=0, label="Seed")
    with gr.Row():
        inpaint_button = gr.Button("Inpaint", variant="primary")
        project_button = gr.Button("Project")
    with gr.Row():
        result = gr.Image(label="Result", type="filepath", format="png", interactive=False, buttons=["download"],
                          height=256, elem_classes="pixels")
        mask = gr.Image(label="Mask used (white: missing)", type="filepath", format="png", interactive=False,
                        height=256, elem_classes="pixels")
        latents = gr.File(label="latents.npy (dcgan sample --latents)")

    @_one_line
    def load(photo):
        crop = actions.canvas(actions.crop_photo(studio, photo))
        return {"background": crop, "layers": [], "composite": crop}

    @_one_line
    def inpaint(photo, painted, steps, restarts, seed, progress=gr.Progress()):
        search = actions.search_of(steps, restarts, seed)
        layers = (painted or {}).get("layers") or []
        image, used = actions.inpaint(studio, photo, layers, search, _progress(progress, "steps"))
        return str(image), str(used)

    @_one_line
    def project(photo, steps, restarts, seed, progress=gr.Progress()):
        image, z = actions.project(studio, photo, actions.search_of(steps, restarts, seed),
                                   _progress(progress, "steps"))
        return str(image), str(z)

    photo.upload(load, photo, editor, api_name="photo")
    inpaint_button.click(inpaint, [photo, editor, steps, restarts, seed], [result, mask], api_name="inpaint")
    project_button.click(project, [photo, steps, restarts, seed], [result, latents], api_name="project")


def verify_tab(studio: Studio) -> None:
    gr = _gr()
    gr.Markdown(f"Identity model: {studio.identity_model}")
    with gr.Row():
        a = gr.File(label="Photo A", file_types=["image"], type="filepath")
        b = gr.File(label="Photo B", file_types=["image"], type="filepath")
    button = gr.Button("Verify", variant="primary")
    verdict = gr.Markdown()
    details = gr.JSON(label="dcgan verify --json")

    @_one_line
    def verify(a, b):
        r = actions.verify(studio, a, b)
        same = "**Same person**" if r["verified"] else "**Not the same person**"
        return f"{same}: distance {r['distance']:.4f} (threshold {r['threshold']:.4f})", r

    button.click(verify, [a, b], [verdict, details], api_name="verify")


def run_tab(studio: Studio) -> None:
    gr = _gr()
    import pandas as pd

    gr.Markdown(f"`{studio.run}`, refreshed every {REFRESH_SECONDS:g} s while it trains.")
    with gr.Row():
        losses = gr.LinePlot(x="epoch", y="loss", color="curve", title="Losses", height=260)
        quality = gr.LinePlot(x="step", y="value", color="metric", title="Quality (dcgan evaluate)", height=260)
    with gr.Row():
        grid = gr.Image(label="Latest grid", type="filepath", interactive=False, height=360, elem_classes="pixels")
        config = gr.JSON(label="config.json")

    def refresh():
        epochs, evals = actions.run_rows(studio.run)
        loss_rows = [{"epoch": r.get("epoch"), "loss": r[k], "curve": k} for r in epochs
                     for k in ("d_loss", "g_loss") if isinstance(r.get(k), (int, float))]
        eval_rows = [{"step": r.get("step"), "value": v, "metric": k} for r in evals for k, v in r.items()
                     if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)]
        latest = actions.latest_grid(studio.run)
        return (pd.DataFrame(loss_rows, columns=["epoch", "loss", "curve"]),
                pd.DataFrame(eval_rows, columns=["step", "value", "metric"]),
                str(latest) if latest else None, actions.run_config(studio.run))

    outputs = [losses, quality, grid, config]
    gr.Timer(REFRESH_SECONDS).tick(refresh, outputs=outputs, api_name=False, show_progress="hidden")
    return refresh, outputs


# label, whether the studio's run supports it, the function that builds it
TABS: list[tuple[str, Callable[[Studio], bool], Callable[[Studio], object]]] = [
    ("Draw", lambda s: True, draw_tab),
    ("Walk", lambda s: True, walk_tab),
    ("Repair", lambda s: s.loaded.restored is not None, repair_tab),  # D comes from the run's checkpoint
    ("Verify", lambda s: s.identity_model is not None, verify_tab),
    ("Run", lambda s: s.loaded.restored is not None, run_tab),
]


def build(studio: Studio):
    """The gr.Blocks of `studio`: the tabs its run supports, in TABS' order."""
    gr = _gr()
    with gr.Blocks(title=f"dcgan studio: {studio.run.name}", analytics_enabled=False) as demo:
        gr.Markdown(f"## dcgan studio\n{studio.loaded.source}")
        for label, supports, make in TABS:
            if supports(studio):
                with gr.Tab(label):
                    made = make(studio)
                if label == "Run" and made:
                    demo.load(made[0], outputs=made[1], api_name="run")
    return demo
