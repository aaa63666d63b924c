"""The command line's flag set is frozen: every subcommand's option strings and positional
names, compared with tests/snapshots/cli_flags.json. Adding, renaming or removing a flag
is a deliberate act: change the JSON by hand in the same commit, so the diff shows it."""
import argparse
import json
from pathlib import Path

from agent.cli.main import build_parser

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_flags.json"


def flags(parser: argparse.ArgumentParser, prefix: str = "kernelpilot") -> dict[str, list[str]]:
    """{"kernelpilot history show": ["--help", "--json", "-h", "id"], ...}, nested subcommands included."""
    found, own = {}, []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            own.append(action.dest)
            for name, sub in action.choices.items():
                found |= flags(sub, f"{prefix} {name}")
        else:
            own.extend(action.option_strings or [action.dest])
    return {prefix: sorted(own)} | found


def test_the_flag_set_is_the_frozen_one():
    now, frozen = flags(build_parser()), json.loads(SNAPSHOT.read_text())
    changes = [f"{command}: added {sorted(set(now.get(command, [])) - set(frozen.get(command, [])))}, "
               f"removed {sorted(set(frozen.get(command, [])) - set(now.get(command, [])))}"
               for command in sorted(set(now) | set(frozen)) if now.get(command) != frozen.get(command)]
    assert not changes, ("the CLI's flags changed:\n  " + "\n  ".join(changes) + f"\nIf that is meant, edit {SNAPSHOT} "
                         "by hand in the same commit (the flag set is a public interface; changing it is deliberate).")


def test_the_walk_sees_nested_subcommands():
    walked = flags(build_parser())
    assert {"kernelpilot history list", "kernelpilot history export", "kernelpilot sandbox check"} <= set(walked)
    assert "--resume" in walked["kernelpilot chat"] and "--resume" in walked["kernelpilot optimize"]
