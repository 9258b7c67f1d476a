"""`dcgan bench` runs every part for real and reports the documented keys (figures are not judged here)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from dcgan_cli.cli import app
from dcgan_cli.config import TrainConfig


@pytest.mark.slow
def test_bench_json_reports_step_loop_input_and_preprocess_figures():
    r = CliRunner().invoke(app, ["bench", "--size", "16", "--batch-size", "8", "--steps", "2", "--precision",
                                 "fp32", "--json", "--face-images", "40"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    for key in ("step_img_per_s", "loop_img_per_s", "input_img_per_s"):
        assert out[key] > 0, key
    assert out["preprocess"]["images"] == 2000 and out["preprocess"]["img_per_s"] > 0
    assert out["precision"] == "fp32" and out["batch"] == 8 and out["device"] == "CPU"
    assert 0 < out["loop_vs_step"]
    face = out["preprocess_face"]  # --crop face on 178x218 JPEGs that each hold one real face
    assert face["images"] == 40 and face["img_per_s"] > 0 and face["faces_found"] >= 36
    assert face["vs_celeba_crop"] > 0


@pytest.mark.slow
def test_bench_loop_on_given_data_uses_its_real_epochs(data16):
    from dcgan_cli.bench.suite import bench

    out = bench(data=str(data16), batch_size=8, steps=2, precision="fp32", parts=("loop",), log=lambda m: None)
    loop = out["loop_real_epochs"]
    assert loop["data_images"] == 24 and loop["steps_per_epoch"] == 3
    # The loop is timed at the cadence training would pick for this data (auto: about every 200 steps).
    trained_at = TrainConfig(batch_size=8).with_cadence(24)
    assert loop["checkpoint_every_epochs"] == trained_at.checkpoint_every_epochs > 1
    assert loop["sample_every_epochs"] == trained_at.sample_every_epochs
    assert 0 < loop["steps_share"] <= 1 and 0 < loop["steps_share_every_epoch"] <= 1
    assert out["loop_vs_step"] == loop["loop_vs_step"] > 0


@pytest.mark.slow
def test_bench_step_of_a_preset_with_augment_reports_its_cost_as_a_ratio():
    r = CliRunner().invoke(app, ["bench", "--parts", "step", "--size", "16", "--batch-size", "8", "--steps", "2",
                                 "--precision", "fp32", "--augment", "ada", "--preset", "paper"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output[r.output.index("{"):])
    on, off = out["step_ada_img_per_s"], (out["step_img_per_s"] + out["step_off_again_img_per_s"]) / 2
    assert on > 0 and out["step_ada_vs_off"] == round(on / off, 3)
    assert "step with --augment ada: " in r.output and "on/off " in r.output
    assert out["preset"] == "paper" and "step (paper preset): " in r.output


def test_bench_rejects_unknown_parts():
    r = CliRunner().invoke(app, ["bench", "--parts", "step,warp"])
    assert r.exit_code == 2


@pytest.mark.slow
def test_bench_stylize_reports_seconds_per_step_and_the_default_run():
    r = CliRunner().invoke(app, ["bench", "--parts", "stylize", "--stylize-size", "32", "--steps", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    # The "default run" is the one `dcgan stylize` does without --steps.
    stylize = typer.main.get_command(app).commands["stylize"]
    assert out["stylize_size"] == 32 and out["stylize_default_steps"] == next(
        p.default for p in stylize.params if p.name == "steps")
    for key in ("stylize_s_per_step", "stylize_cpu_s_per_step", "stylize_vgg19_s_per_step",
                "stylize_vgg19_cpu_s_per_step", "stylize_vgg19_vs_random_cpu", "stylize_default_run_s",
                "stylize_default_run_cpu_s"):
        assert out[key] > 0, key
    assert "step_img_per_s" not in out  # only the part asked for ran
