"""Every subcommand's --help: each option with its text, the settings it reads, an example."""

from __future__ import annotations

import argparse

import pytest

from taskgate.cli import parser


def _subcommands(
    root: argparse.ArgumentParser, prefix: str = ""
) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in root._actions:  # argparse keeps its subparsers here, and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_subcommands(sub, f"{prefix}{name} "))
    return found


SUBCOMMANDS = _subcommands(parser())


def test_every_documented_command_is_there() -> None:
    assert {"dev", "backend", "gateway", "migrate", "connect", "cache", "cache show"} <= set(
        SUBCOMMANDS
    )


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_its_text(name: str) -> None:
    silent = [
        action.option_strings or [action.dest]
        for action in SUBCOMMANDS[name]._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert silent == [], f"taskgate {name}: options without help text"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_names_the_settings_read_and_gives_an_example(name: str) -> None:
    text = SUBCOMMANDS[name].format_help()
    reads = text.split("reads:\n", 1)
    assert len(reads) == 2 and reads[1].strip(), f"taskgate {name} --help names no settings"
    examples = text.split("examples:\n", 1)
    assert len(examples) == 2 and "taskgate " in examples[1], f"taskgate {name}: no example"


def test_cache_show_offers_no_actor_because_it_changes_nothing() -> None:
    assert "--actor" not in SUBCOMMANDS["cache show"].format_help()
    assert "--actor" in SUBCOMMANDS["cache flush"].format_help()
    assert "--actor" in SUBCOMMANDS["cache set-ttl"].format_help()
