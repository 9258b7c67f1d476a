"""The command line as a user meets it: help, usage errors, and the whole path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from helpers import one_line_error

runner = CliRunner()
# Every command the app registers, read from the app itself: a new command is tested without editing this list.
COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]


def test_the_command_list_is_the_apps():
    assert len(COMMANDS) == len(set(COMMANDS)) and {"train", "sample", "evaluate"} <= set(COMMANDS)


@pytest.mark.subprocess
def test_top_level_help_lists_the_commands_without_importing_tensorflow():
    code = ("import sys; from dcgan_cli.cli import app; sys.argv=['dcgan','--help']\n"
            "try: app()\nexcept SystemExit: pass\n"
            "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for cmd in COMMANDS:
        assert cmd in out
    assert "TF-NOT-LOADED" in out


@pytest.mark.subprocess
@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_an_example_and_no_tensorflow(cmd):
    code = (f"import sys; from dcgan_cli.cli import app; sys.argv=['dcgan','{cmd}','--help']\n"
            "try: app()\nexcept SystemExit as e: assert e.code in (0, None), e.code\n"
            "print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Example: dcgan " + cmd in out
    assert "TF-NOT-LOADED" in out


def test_unknown_command_and_bad_option_exit_2():
    assert runner.invoke(app, ["paint"]).exit_code == 2
    assert runner.invoke(app, ["train", "--no-such-flag"]).exit_code == 2
    assert runner.invoke(app, ["train", "--epochs", "zero"]).exit_code == 2


def test_library_errors_are_one_line_with_exit_1(tmp_path):
    one_line_error(runner.invoke(app, ["train", "--data", str(tmp_path / "nowhere")]), "dcgan preprocess")


def test_dry_run_prints_the_config_the_trainer_would_save(data16, tmp_path):
    result = runner.invoke(app, ["train", "--data", str(data16), "--runs-dir", str(tmp_path), "--epochs", "7",
                                 "--ema", "0.9", "--dry-run"])
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.output)
    assert cfg["epochs"] == 7 and cfg["ema"] == 0.9 and cfg["image_size"] == 16 and cfg["channels"] == 3
    assert not list(tmp_path.iterdir()), "--dry-run must not create a run"


@pytest.mark.slow
def test_end_to_end_download_preprocess_train_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["download", "lfw-sample", "--data-dir", "data"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "data/lfw-sample").glob("*.png"))) == 100

    r = runner.invoke(app, ["preprocess", "lfw-sample", "--data-dir", "data", "--size", "16", "--crop", "none"])
    assert r.exit_code == 0, r.output
    data = tmp_path / "data/processed/lfw-sample-16"
    assert json.loads((data / "manifest.json").read_text())["count"] == 100

    args = ["train", "--data", str(data), "--runs-dir", "runs", "--epochs", "2", "--steps-per-epoch", "3",
            "--batch-size", "8", "--g-filters", "8", "--d-filters", "8", "--latent-dim", "16", "--quiet",
            "--precision", "fp32", "--sample-every-epochs", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    (run,) = (tmp_path / "runs").iterdir()
    # The config in the run dir is exactly the one the CLI resolves (and --dry-run prints).
    dry = runner.invoke(app, args + ["--dry-run"])
    saved = json.loads((run / "config.json").read_text())
    saved.pop("history")  # rundir's record of starts and resumes, beside the config
    assert saved == json.loads(dry.output)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]

    r = runner.invoke(app, ["sample", "-n", "16", "out.png", "--runs-dir", "runs"])
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(tmp_path / "out.png"))
    # 4x4 grid of 16x16 images with 2-px padding: 4*(16+2)+2 = 74.
    assert img.shape[:2] == (74, 74)
    assert img.std() > 5, "the grid is blank"


def test_each_preset_reaches_the_config_on_its_own_data_and_a_flag_wins(image_folder, tmp_path):
    """Every preset, on data of its shape: --dry-run prints a valid config holding each value the preset sets,
    except the one a flag overrides (a preset is a set of overrides, flags come last)."""
    from dcgan_cli.config import PRESETS, TrainConfig
    from dcgan_cli.data.preprocess import PreprocessConfig, preprocess

    for name, recipe in PRESETS.items():
        data = tmp_path / name / "data"
        preprocess(PreprocessConfig(source=str(image_folder), out=str(data), size=recipe.get("image_size", 16),
                                    channels=recipe.get("channels", 3), crop="center"), log=lambda m: None)
        epochs = recipe.get("epochs", TrainConfig().epochs) + 1
        r = runner.invoke(app, ["train", "--preset", name, "--data", str(data), "--runs-dir", str(tmp_path / name),
                                "--epochs", str(epochs), "--dry-run"])
        assert r.exit_code == 0, (name, r.output)
        cfg = json.loads(r.stdout)
        TrainConfig(**cfg)  # valid: validation runs on construction
        assert cfg["preset"] == name and cfg["epochs"] == epochs
        assert {k: cfg[k] for k in recipe if k != "epochs"} == {k: v for k, v in recipe.items() if k != "epochs"}, name


def test_a_preset_refuses_data_of_another_size_and_unknown_names_list_the_presets(data16, tmp_path):
    # face128 on 16x16 data: refused with the way to make 128x128 data.
    r = runner.invoke(app, ["train", "--preset", "face128", "--data", str(data16), "--runs-dir", str(tmp_path)])
    assert r.exit_code == 1 and "--size 128" in r.output
    r = runner.invoke(app, ["train", "--preset", "stylegan", "--data", str(data16)])
    # The choices come from config.PRESETS (an Enum built from it), in Typer's usage error.
    flat = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "'dcgan', 'face128', 'demo'" in flat
