"""The README's command reference matches the CLI, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from cli.app import app

README = Path(__file__).resolve().parents[1] / "README.md"


def cli_commands() -> set[str]:
    found = set()

    def walk(cmd, prefix: tuple[str, ...]) -> None:
        subs = getattr(cmd, "commands", None) or {}
        if prefix and (not subs or getattr(cmd, "invoke_without_command", False)):
            found.add(" ".join(prefix))
        for name, sub in subs.items():
            walk(sub, (*prefix, name))

    walk(get_command(app), ())
    return found


def readme_reference() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    names = set()
    for match in re.finditer(r"^\| `slashcat ([^`]*)`", section, re.M):
        words = []
        for word in match.group(1).split():
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        names.add(" ".join(words))
    return names


def test_every_cli_command_is_in_the_readme() -> None:
    missing = cli_commands() - readme_reference()
    assert not missing, f"README's command reference lacks: {sorted(missing)}"


def test_every_readme_command_exists() -> None:
    unknown = readme_reference() - cli_commands()
    assert not unknown, f"README names commands the CLI does not have: {sorted(unknown)}"


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first = text.index("make demo")
    assert first < text.index("make test") < text.index("## Command reference")
