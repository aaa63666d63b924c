"""What every `kernelpilot` subcommand shares: exit codes, one-line errors, argument types."""
import argparse
import sys

EXIT_USAGE, EXIT_PROBLEM, EXIT_INFRA, EXIT_POLICY, EXIT_INTERRUPTED = 2, 3, 4, 5, 130


class UsageError(Exception):
    pass


def fail(message: str, code: int) -> int:
    print(f"kernelpilot: {message}", file=sys.stderr)
    return code


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
