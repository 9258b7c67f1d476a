"""The command line as a user meets it: help, usage errors, and the whole path."""

from __future__ import annotations

import json
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import typer
import typer.main
from PIL import Image
from typer.testing import CliRunner

from dcgan_cli.cli import app
from helpers import one_line_error

runner = CliRunner()
# Every command the app registers, read from the app itself: a new command is tested without editing this list.
COMMANDS = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]


def test_every_command_is_in_a_help_panel_and_the_command_reference():
    """`dcgan --help` groups its commands: one registered without a panel would sit alone under "Commands"."""
    root = typer.main.get_command(app)
    reference = (Path(__file__).resolve().parent.parent / "docs" / "commands.md").read_text(encoding="utf-8")
    for name, cmd in root.commands.items():
        assert cmd.rich_help_panel in {"Data", "Training", "Generating", "Evaluating", "Faces"}, name
        assert f"## `dcgan {name}`" in reference, f"{name} is not in docs/commands.md: run `make docs`"


# ----------------------------------------------------------------------------
# every option that is a config setting reaches the config


def test_an_option_renamed_away_from_its_config_field_stops_the_import():
    """An option whose name is no config field would otherwise be dropped in silence."""
    from dcgan_cli.cli import _App, _Settings
    from dcgan_cli.config import TrainConfig

    def train(epoch_count: int = 1, name: str = ""):  # was `epochs`
        """Example: dcgan train"""

    with pytest.raises(TypeError, match="epoch_count"):
        _App().command(settings=_Settings(TrainConfig, own=("name",)))(train)
    with pytest.raises(TypeError, match="resume"):  # and a resolved name that is no parameter
        _App().command(settings=_Settings(TrainConfig, own=("name", "resume", "epoch_count")))(train)


def test_every_train_and_bench_option_sits_in_a_panel_and_a_panel_naming_no_option_stops_the_import():
    from dcgan_cli.cli import _App

    for path, unpanelled in ((["train"], {"preset", "resume", "dry_run"}), (["bench"], {"parts", "face_images"})):
        params = [p for p in _command(path).params if p.name != "help"]
        assert {p.name for p in params if not getattr(p, "rich_help_panel", None)} == unpanelled, path
        # the defaults a preset decides are shown from the presets, not as "None"
        if path == ["train"]:
            epochs = next(p for p in params if p.name == "epochs")
            assert epochs.show_default and "dcgan" in str(epochs.show_default)

    def train(epochs: Annotated[int, typer.Option(help="Epochs.")] = 1):
        """Example: dcgan train"""

    with pytest.raises(TypeError, match="'epoch_count', which is not an option"):
        _App().command(panels={"Schedule": ("epoch_count",)})(train)


def _command(path):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _settings():
    """(command, option) for every option of the trainers named as a field of their config, but --data and
    --preset (the data and recipe the test gives), and --condition (it needs labelled data: test_conditional's
    runs go through it): read from the commands, not from what cli.py declares."""
    import dataclasses

    from dcgan_cli.config import TrainConfig
    from dcgan_cli.identity.config import IdentityConfig

    return [(command, p.name) for command, config in (("train", TrainConfig), ("identity train", IdentityConfig))
            for p in _command(command.split()).params
            if p.name in {f.name for f in dataclasses.fields(config)} - {"data", "preset", "condition"}]


def _changed(param, base):
    """Command-line arguments that set `param` to a valid value other than `base`, and that value."""
    if isinstance(base, str) and param.type_descriptor.annotation is Path:
        return [param.opts[-1], base + "-elsewhere"], base + "-elsewhere"
    if param.is_flag:
        return [param.secondary_opts[0] if base else param.opts[0]], not base
    kind = param.type_descriptor.annotation
    if isinstance(kind, type) and issubclass(kind, Enum):
        value = next(c.value for c in kind if c.value not in (base, "auto"))
    elif isinstance(base, bool) or not isinstance(base, (int, float)):
        raise AssertionError(f"no rule for {param.name}={base!r}")
    elif isinstance(base, int):
        value = base + 1
    else:
        value = base / 2 if base > 0 else 0.05
    return [param.opts[-1], str(value)], value


@pytest.mark.parametrize("command, field", _settings())
def test_every_setting_option_reaches_the_config(command, field, data16, tmp_path):
    path = command.split()
    param = next(p for p in _command(path).params if p.name == field)
    base_args = [*path, "--data", str(data16), "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    base = json.loads(runner.invoke(app, base_args).stdout)
    args, value = _changed(param, base[field])
    if field == "class_augment":
        args.append("--no-flip")  # dihedral identities are mirror images, which flips would undo
    r = runner.invoke(app, base_args + args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[field] == value, (args, r.stdout)


def test_bench_refuses_augment_auto_as_a_usage_error():
    one_line_error(runner.invoke(app, ["bench", "--augment", "auto", "--parts", "step"]), "diffaug or ada", code=2)


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
    saved.pop("history")  # layout's record of starts and resumes, beside the config
    assert saved == json.loads(dry.output)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]

    r = runner.invoke(app, ["sample", "-n", "16", "out.png", "--runs-dir", "runs"])
    assert r.exit_code == 0, r.output
    img = np.asarray(Image.open(tmp_path / "out.png"))
    # 4x4 grid of 16x16 images with 2-px padding: 4*(16+2)+2 = 74.
    assert img.shape[:2] == (74, 74)
    assert img.std() > 5, "the grid is blank"


def test_each_preset_reaches_the_config_on_its_own_data_and_a_flag_wins(image_folder, tmp_path):
    """Every preset, on data of its shape: --dry-run prints a valid config holding each value the preset sets
    (on this small data, its SMALL_DATA recipe over them), except the one a flag overrides (a preset is a set
    of overrides, flags come last)."""
    from dcgan_cli.config import PRESETS, SMALL_DATA, TrainConfig
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
        recipe = {**recipe, **SMALL_DATA.get(name, {})}
        assert {k: cfg[k] for k in recipe if k != "epochs"} == {k: v for k, v in recipe.items() if k != "epochs"}, name


def test_the_dcgan_preset_keeps_the_papers_d_on_small_data_only_and_a_flag_wins():
    from dcgan_cli.config import SMALL_DATA_BELOW, preset_for_data

    def d_recipe(count, preset="dcgan", **flags):
        c = preset_for_data(preset, {"size": 32, "channels": 1, "count": count}, **flags)
        return c.loss, c.spectral_norm, c.r1_gamma, c.d_norm

    assert d_recipe(SMALL_DATA_BELOW) == ("hinge", True, 1.0, "none")  # SNGAN's D with lazy R1
    assert d_recipe(SMALL_DATA_BELOW - 1) == ("nonsaturating", False, 0.0, "batch")  # the paper's D
    assert d_recipe(80, loss="hinge", d_norm="none") == ("hinge", False, 0.0, "none")  # flags still win
    assert d_recipe(10**6, preset="paper") == ("nonsaturating", False, 0.0, "batch")  # other presets: as they were


def test_a_preset_refuses_data_of_another_size_and_unknown_names_list_the_presets(data16, tmp_path):
    # face128 on 16x16 data: refused with the way to make 128x128 data.
    r = runner.invoke(app, ["train", "--preset", "face128", "--data", str(data16), "--runs-dir", str(tmp_path)])
    assert r.exit_code == 1 and "--size 128" in r.output
    r = runner.invoke(app, ["train", "--preset", "stylegan", "--data", str(data16)])
    # The choices come from config.PRESETS (an Enum built from it), in Typer's usage error.
    flat = " ".join(r.output.replace("│", " ").split())
    assert r.exit_code == 2 and "'dcgan', 'face128', 'demo'" in flat
