"""`dcgan bench` runs every part for real and reports the documented keys (figures are not judged here)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dcgan_cli.cli import app


def test_bench_json_reports_step_loop_input_and_preprocess_figures():
    r = CliRunner().invoke(app, ["bench", "--size", "16", "--batch-size", "8", "--steps", "2", "--precision",
                                 "fp32", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    for key in ("step_img_per_s", "loop_img_per_s", "input_img_per_s"):
        assert out[key] > 0, key
    assert out["preprocess"]["images"] == 2000 and out["preprocess"]["img_per_s"] > 0
    assert out["precision"] == "fp32" and out["batch"] == 8 and out["device"] == "CPU"
    assert 0 < out["loop_vs_step"]


def test_bench_rejects_unknown_parts():
    r = CliRunner().invoke(app, ["bench", "--parts", "step,warp"])
    assert r.exit_code == 2


def test_bench_stylize_reports_seconds_per_step_and_the_default_run():
    r = CliRunner().invoke(app, ["bench", "--parts", "stylize", "--stylize-size", "32", "--steps", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["stylize_size"] == 32 and out["stylize_default_steps"] == 300
    for key in ("stylize_s_per_step", "stylize_cpu_s_per_step", "stylize_vgg19_s_per_step",
                "stylize_vgg19_cpu_s_per_step", "stylize_vgg19_vs_random_cpu", "stylize_default_run_s",
                "stylize_default_run_cpu_s"):
        assert out[key] > 0, key
    assert "step_img_per_s" not in out  # only the part asked for ran
