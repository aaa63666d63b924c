"""`kernelpilot train {collect,export,sft,rft,grpo,merge,smoke,best-of,evaluate}`: retraining the policy and
measuring it (policy_training/commands.py).

    kernelpilot train collect --set problems=benchmarks/problems --set out=runs/collect --set cpu=true
    kernelpilot train export --set out=data/sft
    kernelpilot train sft --config sft.toml --set max_steps=20
    kernelpilot train rft --set model=runs/sft/model --set problems=benchmarks/problems --out runs/rft
    kernelpilot train grpo --set model=runs/rft/model --set problems=benchmarks/problems --out runs/grpo
    kernelpilot train merge --set base=runs/tiny --set adapters=runs/sft/adapter --out runs/merged
    kernelpilot train smoke --out runs/smoke
    kernelpilot train evaluate --set model=runs/grpo/model --set problem_set=problems/manifest.json --out runs/eval

Each stage reads `--config FILE.toml` and `--set key=value` overrides (`--help` lists the keys).
The stages' modules import no training library until a stage runs; `sft` needs the `train` extra.
"""
import argparse

from agent.cli.common import EXIT_STATUS_HELP, ExitCode, UsageError, fail
from policy_training.commands import add_stage_parsers, run_stage
from policy_training.config import ConfigError
from policy_training.training import MissingStack, TrainingError


def add_arguments(train: argparse.ArgumentParser) -> None:
    train.description = ("Retrain the policy (policy_training/): `collect` runs mentor policies over problems into the "
                         "history store, `export` turns the best correct trace per problem into SFT rows, `sft` "
                         "fine-tunes a model directory on them, `rft` samples, grades, writes back and fine-tunes on the correct "
                         "samples, `grpo` runs contrastive RL with the evaluator as reward, `merge` rebuilds a model "
                         "from its base and a chain of adapters, `smoke` runs them all on a tiny model, `best-of` keeps "
                         "the best of N answers, `evaluate` measures a model on held-out problems. Each stage takes "
                         "--config FILE.toml, --set key=value and --out DIR.")
    train.epilog = EXIT_STATUS_HELP
    add_stage_parsers(train.add_subparsers(dest="stage", required=True, metavar="STAGE"))


def run(args) -> ExitCode:
    try:
        run_stage(args.stage, args)
    except MissingStack as error:
        return fail(f"infrastructure error: {error}", ExitCode.INFRA)
    except (ConfigError, TrainingError) as error:
        raise UsageError(str(error)) from None
    return ExitCode.OK
