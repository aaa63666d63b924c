"""`kernelpilot`'s parser and dispatch: the registry of subcommands, and the one place errors
become exit codes (listed in agent/cli/__init__.py).

Each subcommand lives in a module of its own that defines `add_arguments(parser)` (its flags,
description and epilog) and `run(args) -> ExitCode`. This module imports none of them up front:
only the module of the command named on the command line is imported, with the heavy libraries
it needs (torch, Triton, LangGraph, SQLAlchemy...), so `kernelpilot --version`, `kernelpilot
--help`, `kernelpilot history --help` and a mistyped command answer without loading them.

    kernelpilot COMMAND ...            # build_parser(only=COMMAND): that command's flags alone
    build_parser()                     # every command's flags (tests/test_cli_flags.py)
"""
import argparse
import importlib
import json
import signal
import sys
from dataclasses import dataclass
from types import ModuleType

from agent.cli.common import ExitCode, UsageError, fail
from agent.errors import CheckpointError, LaneError, PolicyError, SessionError
from tools.history_errors import HistoryError
from tools.home import HomeError
from tools.problem_errors import ProblemError
from tools.safe_text import clean
from tools.sandbox.contracts import SandboxError
from tools.version import own_version


@dataclass(frozen=True)
class Command:
    """One subcommand: its line in `kernelpilot --help`, and the module that defines its flags
    (`add_arguments(parser)`) and runs it (`run(args)`), imported only when it is named."""

    module: str
    help: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS = {
    "eval": Command("agent.cli.eval", "evaluate one candidate kernel against a problem"),
    "history": Command("agent.cli.history", "read the speedup-history store"),
    "optimize": Command("agent.cli.optimize", "let the agent write and verify faster kernels for a problem"),
    "chat": Command("agent.cli.chat", "talk with the agent about slow code"),
    "sandbox": Command("agent.cli.sandbox", "build and check the Docker sandbox image"),
    "bench": Command("agent.cli.bench", "run the agent over many problems (KernelBench, a folder) and report "
                                        "KernelBench's metrics"),
    "grader": Command("agent.cli.grader", "the grader service: verdicts and RL rewards over HTTP"),
    "train": Command("agent.cli.train", "retrain the policy: collect traces, export SFT rows, fine-tune, rejection "
                                        "sampling, GRPO"),
}

def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with `only`, the flags of that command alone (the others
    keep their line in --help), so only its module is imported."""
    parser = argparse.ArgumentParser(prog="kernelpilot", description="Make slow PyTorch code fast with verified GPU kernels.")
    parser.add_argument("--version", action="version", version=f"kernelpilot {own_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help)
        if only is None or only == name:
            command.load().add_arguments(sub)
    return parser


def named_command(argv: list[str]) -> str:
    """The command `argv` names: its first word that is not an option (the top-level options,
    --help and --version, take no value); '' when there is none or it names no command."""
    first = next((word for word in argv if not word.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: list[str] | None = None) -> ExitCode:
    """Run one subcommand; argparse itself exits with ExitCode.USAGE on a bad command line."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(only=named_command(argv)).parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the sandbox's children are killed on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(ExitCode.TERMINATED))
    try:
        return COMMANDS[args.command].load().run(args)
    except (UsageError, SessionError) as error:
        return failed(args, f"error: {error}", ExitCode.USAGE)
    except ProblemError as error:
        return failed(args, f"bad problem: {error}", ExitCode.PROBLEM)
    except (SandboxError, HistoryError, CheckpointError, HomeError, LaneError, OSError) as error:
        return failed(args, f"infrastructure error: {error}", ExitCode.INFRA)
    except PolicyError as error:
        return failed(args, f"policy error: {error}", ExitCode.POLICY)
    except KeyboardInterrupt:
        return failed(args, "interrupted (an agent session goes on with `kernelpilot optimize --resume ID`)",
                      ExitCode.INTERRUPTED)


def failed(args, message: str, code: ExitCode) -> ExitCode:
    """The one-line error on stderr; with --json, also the one JSON object stdout promises."""
    if getattr(args, "json", False):
        print(json.dumps({"error": {"message": clean(message), "exit_code": int(code), "kind": code.name.lower()}}))
    return fail(message, code)
