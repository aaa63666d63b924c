"""`python -m policy_training STAGE ...`: the training stages without the `kernelpilot` command
(the same verbs, configs and summaries as `kernelpilot train STAGE`; commands.py).

    python -m policy_training sft --config sft.toml --set max_steps=10

Exit status: 0 done, 2 a bad config or unusable input (no rows, no model directory), 4 the
training stack, the sandbox or the history store failed, 5 a mentor policy could not go on.
"""
import argparse
import sys


from agent.errors import PolicyError
from policy_training.commands import add_stage_parsers, run_stage
from policy_training.config import ConfigError
from policy_training.training import MissingStack, TrainingError
from tools.history_errors import HistoryError
from tools.sandbox.contracts import SandboxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy_training",
                                     description="Retrain the policy: collect traces, export SFT rows, fine-tune.")
    add_stage_parsers(parser.add_subparsers(dest="stage", required=True, metavar="STAGE"))
    args = parser.parse_args(argv)
    try:
        run_stage(args.stage, args)
    except MissingStack as error:
        return fail(str(error), 4)
    except (ConfigError, TrainingError) as error:
        return fail(str(error), 2)
    except (HistoryError, SandboxError, OSError) as error:
        return fail(f"infrastructure error: {error}", 4)
    except PolicyError as error:
        return fail(f"policy error: {error}", 5)
    return 0


def fail(message: str, code: int) -> int:
    print(f"policy_training: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
