"""What every `kernelpilot` subcommand shares: the exit codes, one-line errors and argument
types (light: agent/cli/main.py imports it for every command). When each exit code is used:
the package docstring, agent/cli/__init__.py. What `optimize` and `chat` share besides:
agent/cli/sessions.py."""
import argparse
import signal
import sys
from enum import IntEnum

from tools.safe_text import clean


class ExitCode(IntEnum):
    OK = 0
    USAGE = 2
    PROBLEM = 3
    INFRA = 4
    POLICY = 5
    INTERRUPTED = 128 + signal.SIGINT       # 130, as a shell reports Ctrl-C
    TERMINATED = 128 + signal.SIGTERM       # 143, as a shell reports `kill`


EXIT_STATUS_HELP = (f"Exit status: {ExitCode.OK} when the command finished (whatever the verdict), {ExitCode.USAGE} "
                    f"usage, {ExitCode.PROBLEM} bad problem, {ExitCode.INFRA} sandbox or store failure, "
                    f"{ExitCode.POLICY} policy failure (endpoint down, key refused, unknown model), "
                    f"{ExitCode.INTERRUPTED} interrupted.")


class UsageError(Exception):
    pass


def fail(message: str, code: ExitCode) -> ExitCode:
    print(f"kernelpilot: {clean(message)}", file=sys.stderr)
    return code


def indented(text: str, by: int) -> str:
    """`text` cleaned (tools/safe_text.py), its later lines indented: untrusted text never
    starts a line of its own, where it could pass for one of ours (a fake verdict)."""
    return clean(text).replace("\n", "\n" + " " * by)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value
