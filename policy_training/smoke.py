"""`kernelpilot train smoke --out DIR`: every stage once, on a tiny random model and two suite
problems, on a CPU — the quickest way to see training work end to end (and a CI test).

collect (the built-in policy over the problems, through the bench machinery, into a store of the
run's own: DIR/home/history.db) → export (the best correct trace per problem as SFT rows) → sft
(a few steps) → rft (k samples per problem plus `seeds` of the store's correct kernels, every
candidate graded in the Triton interpreter and written back, fine-tuned on the positives) →
grpo (a few steps, groups of `num_generations` with one guidance kernel, contrastive prompts
from the store). The tiny model writes no correct kernel of its own: the positives rft and grpo
learn from are the seeds (rollouts.py), and the summary says how many were the model's own.

DIR/summary.json holds each stage's summary (its metrics), the candidates each stage wrote back
to the store, and the seconds each took; each stage's own folder is under DIR (DIR/sft/model, ...).
The run's home (checkpoints, store) is DIR/home: KERNELPILOT_HOME is set to it while it runs.

    kernelpilot train smoke --set out=runs/smoke          # or: kernelpilot train smoke --out runs/smoke
"""
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.runtime import Runtime, RuntimeOptions
from policy_training.collect import CollectConfig, run_collect
from policy_training.config import as_dict
from policy_training.export import ExportConfig, export
from policy_training.grading import LocalGrader
from policy_training.grpo import GRPOStageConfig, run_grpo
from policy_training.rft import RFTConfig, run_rft
from policy_training.sft import Device, SFTConfig, run_sft
from policy_training.tiny import build_tiny
from policy_training.training import MODEL, SUMMARY, require_stack
from tools.device import versions
from tools.history import HistoryStore
from tools.version import own_version

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "problems"
SMOKE_PROBLEMS = (SUITE / "01_scale_bias_relu_chain.py", SUITE / "04_softmax_rows.py")


@dataclass(frozen=True)
class SmokeConfig:
    out: Path                                   # the run's folder: home/, tiny/, collect/, data/, sft/, rft/, grpo/
    problems: tuple[Path, ...] = SMOKE_PROBLEMS  # problem files (two small suite problems by default)
    max_turns: int = 3                          # collect: the built-in policy's turns per problem
    sft_steps: int = 4                          # sft optimizer steps
    k: int = 2                                  # rft: samples per problem
    seeds: int = 1                              # rft and grpo: the store's correct kernels mixed in per problem
    grpo_steps: int = 2                         # grpo optimizer steps (one problem each)
    num_generations: int = 2                    # grpo: the group
    max_new_tokens: int = 16                    # tokens per sampled completion (a random model never stops)
    learning_rate: float = 1e-3                 # of every fine-tuning stage

    def check(self) -> str | None:
        if min(self.max_turns, self.sft_steps, self.k, self.grpo_steps, self.max_new_tokens) < 1:
            return "max_turns, sft_steps, k, grpo_steps and max_new_tokens must be positive"
        if self.num_generations < 2 or self.seeds >= self.num_generations:
            return "num_generations must be at least 2 and more than seeds"
        return None


@contextmanager
def home(folder: Path):
    """KERNELPILOT_HOME set to `folder` for the block (the sessions' checkpoints that export reads)."""
    before = os.environ.get("KERNELPILOT_HOME")
    os.environ["KERNELPILOT_HOME"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("KERNELPILOT_HOME")
        else:
            os.environ["KERNELPILOT_HOME"] = before


def run_smoke(config: SmokeConfig, log=print) -> dict:
    """Every stage in turn; DIR/summary.json; the summary."""
    require_stack()
    started, out = time.monotonic(), config.out.resolve()
    db = f"sqlite:///{out / 'home' / 'history.db'}"
    stages: dict[str, dict] = {}
    with home(out / "home"):
        tiny = timed(stages, "tiny", lambda: {"model": str(build_tiny(out / "tiny"))})
        timed(stages, "collect", lambda: run_collect(CollectConfig(out=out / "collect", problems=config.problems,
                                                                   max_turns=config.max_turns, cpu=True, db=db), log))
        timed(stages, "export", lambda: export(ExportConfig(out=out / "data", db=db, held_out_fraction=0.0)))
        timed(stages, "sft", lambda: run_sft(SFTConfig(model=tiny["model"], data=out / "data", out=out / "sft",
                                                       max_steps=config.sft_steps, learning_rate=config.learning_rate,
                                                       max_length=4096, device=Device.CPU), log))
        with Runtime.open(RuntimeOptions(force_cpu=True, db=db)) as runtime:
            rft = RFTConfig(model=str(out / "sft" / MODEL), out=out / "rft", problems=config.problems, cpu=True, db=db,
                            k=config.k, seeds=config.seeds, max_new_tokens=config.max_new_tokens, max_steps=2,
                            max_length=4096, learning_rate=config.learning_rate, device=Device.CPU)
            timed(stages, "rft", lambda: run_rft(rft, log, LocalGrader(runtime, "rft", rft.model, rft.grading().reward)))
            grpo = GRPOStageConfig(model=str(out / "rft" / MODEL), out=out / "grpo", problems=config.problems, cpu=True,
                                   db=db, num_generations=config.num_generations, seeds=config.seeds,
                                   max_steps=config.grpo_steps, max_new_tokens=config.max_new_tokens, exemplars=1,
                                   learning_rate=config.learning_rate, device=Device.CPU)
            timed(stages, "grpo", lambda: run_grpo(grpo, log, LocalGrader(runtime, "grpo", grpo.model,
                                                                           grpo.grading().reward)))
    return write(config, out, stages, db, started)


def timed(stages: dict, name: str, run) -> dict:
    began = time.monotonic()
    stages[name] = {**run(), "stage_seconds": round(time.monotonic() - began, 1)}
    return stages[name]


def write(config: SmokeConfig, out: Path, stages: dict, db: str, started: float) -> dict:
    store = HistoryStore(db)
    try:
        stored = store.count()
    finally:
        store.engine.dispose()
    collected = sum(m["rows"] for m in stages["collect"]["mentors"].values())
    summary = {"stage": "smoke", "out": str(out), "store": db, "evaluations_in_store": stored,
               "written_back": {"rft": stages["rft"]["written_back"], "grpo": stages["grpo"]["written_back"]},
               "collected_sessions": collected, "model": stages["grpo"]["model"],
               "seconds": round(time.monotonic() - started, 1), "stages": stages, "config": as_dict(config),
               "versions": {**versions(), "kernelpilot": own_version()}}
    (out / SUMMARY).write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def summary_line(summary: dict) -> str:
    s = summary["stages"]
    return (f"smoke: {summary['seconds']} s; collect {s['collect']['stage_seconds']} s, sft loss "
            f"{s['sft']['loss_first']:.3f} -> {s['sft']['loss_last']:.3f}, rft {s['rft']['positives']} positive(s) "
            f"from {s['rft']['written_back']} written back, grpo {s['grpo']['steps']} step(s) with "
            f"{s['grpo']['written_back']} written back; {summary['evaluations_in_store']} evaluation(s) in "
            f"{summary['store']}; summary: {summary['out']}/summary.json")
