"""One flag name per meaning across every command, and the old spellings as hidden, noted aliases.

The names are read from the app itself (every command, with the `identity`
group's), so a new command or option is checked without editing this file.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest
import typer
from typer.testing import CliRunner

from dcgan_cli.cli import app

runner = CliRunner()


def _commands(group=None, prefix=()):
    """(("identity", "train"), click command) for every leaf command of the app."""
    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


COMMANDS = dict(_commands())


def _options():
    """{python parameter name: {command: option spellings}} over every option of every command."""
    table = defaultdict(dict)
    for path, cmd in COMMANDS.items():
        for p in cmd.params:
            if p.param_type_name == "option":
                table[p.name][" ".join(path)] = tuple(p.opts) + tuple(p.secondary_opts)
    return table


OPTIONS = _options()

# Each kind of parameter and the one spelling every command uses for it.
KINDS = {
    "generator": ("--generator",),  # a generator .keras file
    "identity_model": ("--identity-model",),  # the face-embedding network
    "run": ("--run",),
    "runs_dir": ("--runs-dir",),
    "data": ("--data",),  # preprocessed data (holds manifest.json)
    "data_dir": ("--data-dir",),  # the data root
    "seed": ("--seed",),
    "seeds": ("--seeds",),
    "resume": ("--resume",),
    "no_ema": ("--no-ema",),
    "best": ("--best",),
    "force": ("--force",),
    "quiet": ("--quiet",),
    "json_": ("--json",),
    "dry_run": ("--dry-run",),
    "batch_size": ("--batch-size",),
    "threshold": ("--threshold",),
    "epochs": ("--epochs",),
    "steps_per_epoch": ("--steps-per-epoch",),
    "checkpoint_every_steps": ("--checkpoint-every-steps",),
}

# Deprecated spelling -> (a command that takes it, the current name); kept for one release.
RENAMED = [
    ("sample", "--model", "--generator"),
    ("stylize", "--model", "--generator"),
    ("audit", "--model", "--generator"),
    ("evaluate", "--model", "--generator"),
    ("evaluate --verification", "--model", "--identity-model"),
    ("verify", "--model", "--identity-model"),
    ("identify", "--model", "--identity-model"),
    ("audit", "--model-id", "--identity-model"),
    ("train", "--checkpoint-every", "--checkpoint-every-steps"),
    ("identity train", "--checkpoint-every", "--checkpoint-every-steps"),
    ("train", "--checkpoint-epochs", "--checkpoint-every-epochs"),
    ("train", "--sample-every", "--sample-every-epochs"),
    ("train", "--eval-every", "--eval-every-epochs"),
    ("stylize", "--save-every", "--save-every-steps"),
]


# ----------------------------------------------------------------------------
# the names, read from the app


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_command_spells_a_parameter_kind_the_same_way(kind):
    used = OPTIONS.get(kind, {})
    assert used, f"no command has a {kind} option: the table is out of date"
    wrong = {cmd: opts for cmd, opts in used.items() if opts != KINDS[kind]}
    assert not wrong, f"{kind} should be {KINDS[kind]} everywhere, not {wrong}"


def test_one_parameter_name_has_one_spelling_across_commands():
    """The catch-all beside the table: no parameter is spelled two ways by two commands."""
    mixed = {name: used for name, used in OPTIONS.items() if len(set(used.values())) > 1}
    assert not mixed, mixed


def test_no_command_declares_an_old_spelling_or_an_ambiguous_model():
    declared = {opt for used in OPTIONS.values() for opts in used.values() for opt in opts}
    assert not declared & {old for _, old, _ in RENAMED}
    assert "model" not in OPTIONS and "model_id" not in OPTIONS


def test_step_and_epoch_counts_say_which():
    counts = [opt for used in OPTIONS.values() for opts in used.values() for opt in opts if "-every" in opt]
    assert counts, "the cadence options are gone?"
    assert all(opt.endswith(("-steps", "-epochs")) for opt in counts), counts


@pytest.mark.parametrize("command, old, new", RENAMED)
def test_an_old_spelling_is_not_in_help(command, old, new):
    path = command.replace(" --verification", "").split()
    out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}, terminal_width=250).output
    assert new in out
    assert not re.search(re.escape(old) + r"(?![\w-])", out), f"{old} shows in `dcgan {' '.join(path)} --help`"


# ----------------------------------------------------------------------------
# each name works, each old one too, with a one-line note


def _invoke(args):
    r = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in r.output, r.output
    return r


def _notes(r):
    return [line for line in r.stderr.splitlines() if "is deprecated" in line]


# (command line with FLAG in place of the option, what proves the option reached the library, exit code)
def _cases(tmp_path, data16):
    nowhere = tmp_path / "nowhere.keras"
    return {
        ("sample", "--generator"): (["sample", tmp_path / "o.png", "FLAG", nowhere], "no model file at", 1),
        ("stylize", "--generator"): (["stylize", tmp_path / "s.png", "-o", tmp_path / "o.png", "FLAG", nowhere],
                                     "no model file at", 1),
        ("evaluate", "--generator"): (["evaluate", "FLAG", nowhere], "no model file at", 1),
        ("audit", "--generator"): (["audit", "--run", tmp_path, "FLAG", nowhere], "audit one thing", 2),
        ("evaluate --verification", "--identity-model"): (["evaluate", "--verification", "FLAG", nowhere],
                                                          "no model at", 1),
        ("verify", "--identity-model"): (["verify", "a.png", "b.png", "FLAG", nowhere], "no model at", 1),
        ("identify", "--identity-model"): (["identify", "a.png", "--gallery", tmp_path, "FLAG", nowhere],
                                           "no model at", 1),
        ("audit", "--identity-model"): (["audit", "--run", tmp_path, "FLAG", nowhere], "no model at", 1),
        ("stylize", "--save-every-steps"): (["stylize", tmp_path / "c.png", tmp_path / "s.png", "-o",
                                             tmp_path / "o.png", "FLAG", 2], "no content image at", 1),
        # The trainers' cadences: --dry-run prints the config the flag went into.
        ("train", "--checkpoint-every-steps"): (["train", "--data", data16, "--dry-run", "FLAG", 7],
                                                '"checkpoint_every_steps": 7', 0),
        ("train", "--checkpoint-every-epochs"): (["train", "--data", data16, "--dry-run", "FLAG", 7],
                                                 '"checkpoint_every_epochs": 7', 0),
        ("train", "--sample-every-epochs"): (["train", "--data", data16, "--dry-run", "FLAG", 7],
                                             '"sample_every_epochs": 7', 0),
        ("train", "--eval-every-epochs"): (["train", "--data", data16, "--dry-run", "FLAG", 7],
                                           '"eval_every_epochs": 7', 0),
        ("identity train", "--checkpoint-every-steps"): (["identity", "train", "--data", data16, "--dry-run",
                                                          "FLAG", 7], '"checkpoint_every_steps": 7', 0),
    }


def test_every_rename_has_a_case():
    from pathlib import Path

    assert {(cmd, new) for cmd, _, new in RENAMED} == set(_cases(Path("x"), Path("d")))


@pytest.mark.parametrize("command, old, new", RENAMED)
def test_new_and_old_spellings_both_work_and_only_the_old_one_is_noted(command, old, new, tmp_path, data16):
    args, proof, code = _cases(tmp_path, data16)[(command, new)]
    r = _invoke([new if a == "FLAG" else a for a in args])
    assert r.exit_code == code and proof in r.output, r.output
    assert not _notes(r)
    r = _invoke([old if a == "FLAG" else a for a in args])
    assert r.exit_code == code and proof in r.output, r.output
    assert _notes(r) == [f"{old} is deprecated, use {new}"]
    if code == 0:
        json.loads(r.stdout)  # the note is on stderr: stdout stays the config


def test_an_old_spelling_also_works_as_flag_equals_value(tmp_path, data16):
    r = _invoke(["train", "--data", data16, "--dry-run", "--sample-every=3"])
    assert r.exit_code == 0 and json.loads(r.stdout)["sample_every_epochs"] == 3
    assert _notes(r) == ["--sample-every is deprecated, use --sample-every-epochs"]


def test_an_option_value_that_looks_like_an_old_flag_is_left_alone(tmp_path, data16):
    r = _invoke(["train", "--data", data16, "--dry-run", "--name", "--sample-every"])
    # --name got the text itself (and refused it as a run name), not --sample-every-epochs.
    assert r.exit_code == 1 and "'--sample-every' is not a run name" in r.output, r.output
    assert not _notes(r)
