"""Write docs/commands.md, the command reference, from the CLI's own `--help`.

    python scripts/gen_commands.py           # rewrite docs/commands.md
    python scripts/gen_commands.py --check   # exit 1 if docs/commands.md is stale (`make docs` fixes it)

The reference is generated so it cannot drift from the code: every command and
sub-command of `dcgan_cli.cli.app` (including `identity ...`) is rendered through
Click's plain help formatter at a fixed width, with Rich switched off, so the
output is the same on any machine, whatever the terminal's size or colours. Options
and commands are grouped under their `rich_help_panel` headings, as `--help` shows them.
`tests/test_docs.py` fails when the file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "commands.md"
WIDTH = 100  # the rendered help's line width: fixed, so the terminal's size never matters

HEADER = """\
# Command reference

Generated from the code by `scripts/gen_commands.py` (`make docs`); do not edit by hand.
Each section is the command's `--help`. For what the commands are for and how they fit
together, start with the [README](../README.md).
"""


def _format_options(cmd, ctx, formatter):
    """Typer's plain Arguments, Options and Commands sections, one per `rich_help_panel` as `--help` groups them."""
    sections: dict[str, list] = {"Arguments": [], "Options": []}
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            default = "Arguments" if param.param_type_name == "argument" else "Options"
            sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
    commands = getattr(cmd, "commands", None) or {}
    if commands:
        sections["Commands"] = []
        width = ctx.terminal_width - 6 - max(map(len, commands))
        for name in cmd.list_commands(ctx):
            child = commands[name]
            if not child.hidden:
                panel = getattr(child, "rich_help_panel", None) or "Commands"
                sections.setdefault(panel, []).append((name, child.get_short_help_str(width)))
    for title, rows in sections.items():
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def _walk(cmd, ctx, path):
    """Yield (full name, rendered help) for `cmd` and every visible sub-command, depth first."""
    import typer

    # Typer renders help through Rich unless a command's markup mode is None; these command
    # objects are built fresh by get_command, so switching it off here touches nothing else.
    cmd.rich_markup_mode = None
    cmd.format_options = lambda ctx, formatter: _format_options(cmd, ctx, formatter)
    sub = typer.Context(cmd, info_name=path[-1], parent=ctx, terminal_width=WIDTH, max_content_width=WIDTH,
                        color=False)
    yield " ".join(path), cmd.get_help(sub)
    commands = getattr(cmd, "commands", None) or {}
    for name in cmd.list_commands(sub) if commands else []:  # the order `dcgan --help` lists them in
        child = commands[name]
        if getattr(child, "hidden", False):
            continue
        yield from _walk(child, sub, [*path, name])


def command_names() -> list[str]:
    """Every visible command path, e.g. `dcgan train`, `dcgan identity train`."""
    return [name for name, _ in _iter_help()]


def _iter_help():
    import typer.main

    from dcgan_cli.cli import app

    root = typer.main.get_command(app)
    return list(_walk(root, None, ["dcgan"]))


def render() -> str:
    """The whole of docs/commands.md as it should be now."""
    sections = _iter_help()
    lines = [HEADER]
    lines.append("| command | what it does |")
    lines.append("| --- | --- |")
    for name, text in sections[1:]:
        summary = _summary(text)
        lines.append(f"| [`{name}`](#{_anchor(name)}) | {summary} |")
    lines.append("")
    for name, text in sections:
        lines.append(f"## `{name}`")
        lines.append("")
        lines.append("```text")
        lines.extend(line.rstrip() for line in text.rstrip("\n").splitlines())
        lines.append("```")
        lines.append("")
    return "\n".join(lines)


def _summary(help_text: str) -> str:
    """The first sentence of a command's help (the paragraph after its usage line)."""
    paragraphs = [p.strip() for p in help_text.split("\n\n")]
    body = paragraphs[1] if len(paragraphs) > 1 else ""
    first = " ".join(body.split())
    end = first.find(". ")
    first = first if end < 0 else first[:end + 1]
    return first.replace("|", "\\|")


def _anchor(name: str) -> str:
    """GitHub's anchor for a `## \\`NAME\\`` heading: lower case, spaces to dashes, punctuation dropped."""
    return "".join(ch for ch in name.lower().replace(" ", "-") if ch.isalnum() or ch in "-_")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/commands.md is stale; write nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else None
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale (the CLI's help changed): run `make docs`", file=sys.stderr)
            return 1
        return 0
    tmp = OUT.with_name(OUT.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(OUT)  # atomic: a reader never sees half a file
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
