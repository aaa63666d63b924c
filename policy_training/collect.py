"""`kernelpilot train collect`: traces from the real agent, each mentor run through the bench machinery.

A mentor is any policy: `builtin` (it writes an analysis and a kernel every turn, a teacher that
needs no LLM), `openai:MODEL` (an OpenAI-compatible endpoint at `base_url`, or OPENAI_BASE_URL),
`replay:FILE`, `local:MODEL_DIR`. Each runs over the problems as `kernelpilot bench` would (one
agent session per problem through the graph, the toolbox, the sandbox and the evaluator), into
OUT/MENTOR/ (results.jsonl, resumable) and the history store, whose evaluations and the
sessions' checkpoints `kernelpilot train export` reads. Without a GPU the kernels run in the
Triton interpreter: correctness is checked, speed is not measured. OUT/collect.json records the
mentors, the problems and each mentor's counts.

    kernelpilot train collect --set 'problems=benchmarks/problems' --set 'mentors=builtin,openai:qwen' --set out=runs/collect
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from agent.bench.lanes import run_bench
from agent.bench.rows import BenchRow, RowStatus, RunLog
from agent.bench.runner import BenchOptions, select
from agent.graph import Budget
from agent.policies import PolicyKind, PolicySpec
from agent.runtime import RuntimeOptions
from policy_training.config import as_dict
from policy_training.problems import Split, manifest_digest, read_split
from policy_training.training import TrainingError
from tools.evaluator import EvalConfig
from tools.sandbox.backends import SandboxKind


@dataclass(frozen=True)
class CollectConfig:
    out: Path                                   # one bench run per mentor under it, and collect.json
    problems: tuple[Path, ...] = ()             # problem files or folders (a KernelBench checkout too)
    problem_set: Path | None = None             # or a generated problem set's manifest.json: its train split
    mentors: tuple[str, ...] = ("builtin",)     # builtin, openai:MODEL, replay:FILE, local:MODEL_DIR
    base_url: str | None = None                 # the endpoint of openai mentors (else OPENAI_BASE_URL or config.toml)
    only: tuple[str, ...] = ("*",)              # globs over problem names (file stems)
    max_turns: int = 5                          # policy turns per problem
    workers: int = 1                            # sessions at once (helps LLM mentors that wait for tokens)
    lanes: int = 0                              # lane processes (bench's lanes): on GPU 0, or in the interpreter with cpu; 0: none
    size: str = "auto"                          # auto (full on a GPU, SMALL_SIZES in the interpreter), full, small
    cpu: bool = False                           # the Triton interpreter even where a GPU is present
    untimed: bool = False                       # correctness only, no baselines, even on a GPU (traces need no timing)
    db: str | None = None                       # history store URL; none: KERNELPILOT_DB_URL or $KERNELPILOT_HOME/history.db
    sandbox: SandboxKind = SandboxKind.PROCESS  # where candidates run: process or docker
    timeout_s: float | None = None              # wall-clock limit per evaluation step

    def check(self) -> str | None:
        if not self.problems and self.problem_set is None:
            return "name problems (files or folders) or a problem_set manifest"
        if self.problems and self.problem_set is not None:
            return "problems and problem_set exclude each other"
        if self.max_turns < 1 or self.workers < 1 or self.lanes < 0:
            return "max_turns and workers must be at least 1, lanes at least 0"
        if self.size not in ("auto", "full", "small"):
            return f"size must be auto, full or small, not {self.size!r}"
        return None


def mentor_spec(text: str, base_url: str | None) -> PolicySpec:
    """A mentor named in the config as a policy spec (`openai:MODEL` names the model)."""
    name, _, argument = text.partition(":")
    if name == PolicyKind.OPENAI:
        return PolicySpec.parse("openai", model=argument or None, base_url=base_url)
    return PolicySpec.parse(text)


def folder_of(mentor: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", mentor).strip("_")[:80] or "mentor"


def bench_options(config: CollectConfig, mentor: str) -> BenchOptions:
    spec = mentor_spec(mentor, config.base_url)
    sources = tuple(read_split(config.problem_set, Split.TRAIN)) if config.problem_set else config.problems
    budget = Budget(max_turns=config.max_turns, patience=None if spec.kind is PolicyKind.BUILTIN else 5)
    runtime = RuntimeOptions(sandbox=config.sandbox, db=config.db, force_cpu=config.cpu, timeout_s=config.timeout_s,
                             eval=EvalConfig(timed=not config.untimed, baselines=not config.untimed))
    return BenchOptions(sources=sources, out=config.out / folder_of(mentor), policy=spec, budget=budget,
                        only=config.only, workers=config.workers, size=config.size, runtime=runtime,
                        lanes=tuple(None if config.cpu else 0 for _ in range(config.lanes)))


def run_collect(config: CollectConfig, log=print) -> dict:
    """Run every mentor over the problems (resuming what an earlier run finished); the summary."""
    options = [bench_options(config, mentor) for mentor in config.mentors]    # a bad mentor fails before any run
    files = select(options[0])
    if not files:
        raise TrainingError("no problem matches the selection (check problems, problem_set and only)")
    mentors = {}
    for mentor, option in zip(config.mentors, options):
        log(f"collect: {mentor} over {len(files)} problem(s) into {option.out}")
        run_bench(option, on_row=lambda row, m=mentor: log(f"  {m} {row.key}: {row.status}"
                                                             + (f" ({row.reason[:100]})" if row.reason else "")))
        mentors[mentor] = counts(option)
    summary = {"config": as_dict(config), "problems": [str(f.path) for f in files], "mentors": mentors,
               "problem_set_sha256": manifest_digest(config.problem_set) if config.problem_set else None}
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "collect.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def counts(options: BenchOptions) -> dict:
    """The mentor's rows so far (this run's and an earlier one's): how many, how many correct, failed."""
    rows: list[BenchRow] = list(RunLog(options.out).finished().values())
    return {"folder": str(options.out), "rows": len(rows), "correct": sum(r.status is RowStatus.CORRECT for r in rows),
            "failed": sum(r.status is RowStatus.FAILED for r in rows)}


def summary_line(summary: dict) -> str:
    parts = [f"{mentor}: {c['correct']}/{c['rows']} correct" + (f", {c['failed']} failed" if c["failed"] else "")
             for mentor, c in summary["mentors"].items()]
    return f"collect: {len(summary['problems'])} problem(s); " + "; ".join(parts)
