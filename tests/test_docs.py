"""The user-facing documents: short README, generated command reference, links that resolve.

docs/commands.md is the CLI's `--help` rendered by scripts/gen_commands.py; when a
command's help changes, the first test fails until `make docs` regenerates it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
USER_DOCS = [README, ROOT / "CHANGELOG.md", *DOCS]
README_MAX_LINES = 300

LINK = re.compile(r"(?<![\w\])])!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
ISSUE = re.compile(r"\bissues? #?\d+", re.IGNORECASE)


def _gen_commands():
    spec = importlib.util.spec_from_file_location("gen_commands", ROOT / "scripts" / "gen_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _strip_code(text: str) -> str:
    """The text outside code blocks and code spans (a link inside code is not a link)."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings (lower case, punctuation dropped, spaces to '-')."""
    anchors = set()
    for line in _strip_fences(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            title = m.group(1).strip().lower()
            anchors.add("".join(ch for ch in title if ch.isalnum() or ch in "-_ ").replace(" ", "-"))
    return anchors


def test_commands_md_is_what_the_code_generates():
    gen = _gen_commands()
    assert (ROOT / "docs" / "commands.md").read_text(encoding="utf-8") == gen.render(), (
        "docs/commands.md is stale: run `make docs`")


def test_generated_help_ignores_the_terminal(monkeypatch):
    gen = _gen_commands()
    first = gen.render()
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert gen.render() == first
    assert "\x1b[" not in first  # no colour codes
    assert "Usage: dcgan identity train" in first  # sub-commands are walked


def test_check_names_the_fix_when_stale(tmp_path, monkeypatch, capsys):
    gen = _gen_commands()
    stale = tmp_path / "commands.md"
    stale.write_text("# Command reference\n", encoding="utf-8")
    monkeypatch.setattr(gen, "OUT", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "make docs" in err
    assert stale.read_text(encoding="utf-8") == "# Command reference\n"  # --check writes nothing
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_no_document_speaks_of_issue_numbers(path):
    hits = [line for line in path.read_text(encoding="utf-8").splitlines() if ISSUE.search(line)]
    assert not hits, f"{path.name} refers to issue numbers (say what the thing is; history goes in CHANGELOG.md): {hits}"


def _broken_links(docs: list[Path]) -> tuple[list[str], int]:
    """Relative links (and images) of `docs` whose file or heading does not exist, and how many were checked."""
    broken, seen = [], 0
    for doc in docs:
        for target in LINK.findall(_strip_code(doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            seen += 1
            path, _, fragment = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                broken.append(f"{doc.name}: {target} (no such heading)")
    return broken, seen


def test_every_relative_link_resolves():
    broken, seen = _broken_links(USER_DOCS)
    assert seen >= 10, "the link pattern found almost no links: is it still matching Markdown links?"
    assert not broken, broken


def test_link_checker_catches_missing_files_and_headings(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    doc = tmp_path / "x.md"
    doc.write_text("[ok](there.md#a-heading) [gone](missing.md) [web](https://example.org) `[code](code.md)`\n"
                   "    images = g.signatures[\"serving_default\"](latent=z)\n"
                   "[bad anchor](there.md#nope) ![pic](pic.png)\n```\n[fenced](fenced.md)\n```\n", encoding="utf-8")
    broken, seen = _broken_links([doc])
    assert seen == 4
    assert broken == ["x.md: missing.md (no such file)", "x.md: there.md#nope (no such heading)",
                      "x.md: pic.png (no such file)"]


def test_every_command_is_in_the_readme():
    gen = _gen_commands()
    text = README.read_text(encoding="utf-8")
    names = gen.command_names()
    assert "dcgan identity train" in names and "dcgan verify" in names
    missing = [name for name in names if not re.search(re.escape(name) + r"\b", text)]
    assert not missing, f"README.md never mentions {missing}"
