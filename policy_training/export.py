"""`kernelpilot train export`: the history store and checkpoints as SFT rows, split by problem hash.

The best correct, unflagged trajectory per problem (traces.py: the multi-mentor rule) becomes
one row in each form:

- `messages/SPLIT.jsonl`: `{"messages": [system, user, assistant]}`, the prompt rendered by
  agent/prompts.py `build_messages` (the code the agent uses at inference, for the problem at
  the size, device and backend the trace ran on; no exemplars: the contrastive stage adds
  them) and the assistant's analysis followed by the kernel in a ```python block;
- `prompt_completion/SPLIT.jsonl`: the same as `{"prompt": [system, user], "completion": [assistant]}`;
- `agent/SPLIT.jsonl`: the same prompt, then the session's own turns (analysis, tool calls, tool
  results) up to the turn that asked for the kept kernel, with `"tools"` (the toolbox's schemas
  as one JSON string); only for traces whose checkpoint is kept.

Beside them `trajectories.jsonl` (each kept trace with its whole conversation and verdict) and
`manifest.json`: the config, the store, every problem's hash, split, session, mentor and
evaluation, the sessions left out and why, and the split rule (policy_training.problems.split_of).

    kernelpilot train export --set out=data/sft [--set db=sqlite:///history.db] [--set policies=builtin]
"""
import json
import types
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.prompts import build_messages
from policy_training.config import as_dict
from policy_training.problems import Split, split_of
from policy_training.traces import Choice, StoredProblem, choose, read_trajectories
from tools.device import DeviceInfo, versions
from tools.history import EvaluationRecord, HistoryStore
from tools.problems import Problem
from tools.records import Mode
from tools.toolbox import Toolbox
from tools.trust import Versus, trusted_speedup
from tools.version import own_version

EXPORT_VERSION = 1
MANIFEST = "manifest.json"
FORMS = ("messages", "prompt_completion", "agent")


@dataclass(frozen=True)
class ExportConfig:
    out: Path                                   # the folder to write (its files are replaced)
    db: str | None = None                       # history store URL; none: KERNELPILOT_DB_URL or $KERNELPILOT_HOME/history.db
    policies: tuple[str, ...] = ()              # mentors to learn from (policy or policy:model); empty: every one
    held_out_fraction: float = 0.1              # share of problems (by hash) kept out of training

    def check(self) -> str | None:
        if not 0.0 <= self.held_out_fraction < 1.0:
            return f"held_out_fraction must be within [0, 1), not {self.held_out_fraction}"
        return None


def prompt_problem(stored: StoredProblem, size: str) -> Problem:
    """The stored problem as the prompt builder reads it (name, category, size, source); its module
    is an empty placeholder, since rendering a prompt never runs the problem."""
    return Problem(name=stored.name, path=Path(f"{stored.name}.py"), source=stored.source, hash=stored.hash,
                   suite=stored.suite, level=stored.level, category=stored.category, size=size,
                   module=types.ModuleType(f"kp_stored_{stored.hash[:12]}"))


def trace_device(evaluation: EvaluationRecord) -> DeviceInfo:
    mode = Mode(evaluation.mode)
    return DeviceInfo(mode, evaluation.device, None if mode is Mode.CPU_INTERPRETER else 0)


def prompt_of(choice: Choice) -> list[dict]:
    """The prompt the agent would have been given for this trace, by the agent's own builder."""
    e = choice.evaluation
    return build_messages(prompt_problem(choice.trajectory.problem, e.size), choice.trajectory.backend,
                          trace_device(e), [])


def completion_of(evaluation: EvaluationRecord) -> str:
    """The analysis, then the kernel as the last ```python block (what the local policy and the
    grader's reward function read a kernel from)."""
    return f"{evaluation.analysis.strip()}\n\n```python\n{evaluation.source.strip()}\n```"


def rows_of(choice: Choice) -> dict[str, dict | None]:
    prompt = prompt_of(choice)
    answer = {"role": "assistant", "content": completion_of(choice.evaluation)}
    turns = choice.trajectory.conversation_until(choice.evaluation)
    agent = ({"messages": prompt + turns, "tools": json.dumps(Toolbox.schemas())} if turns else None)
    return {"messages": {"messages": prompt + [answer]},
            "prompt_completion": {"prompt": prompt, "completion": [answer]}, "agent": agent}


def export(config: ExportConfig) -> dict:
    """Write the rows, trajectories.jsonl and manifest.json into config.out; the manifest."""
    store = HistoryStore(config.db)
    try:
        trajectories = read_trajectories(store, config.policies)
    finally:
        store.engine.dispose()
    chosen, skipped = choose(trajectories)
    config.out.mkdir(parents=True, exist_ok=True)
    splits = {c.trajectory.problem.hash: split_of(c.trajectory.problem.hash, config.held_out_fraction) for c in chosen}
    counts = write_rows(config.out, chosen, splits)
    write_jsonl(config.out / "trajectories.jsonl", [trajectory_record(c, splits) for c in chosen])
    manifest = {
        "kind": "kernelpilot.sft_export", "version": EXPORT_VERSION, "config": as_dict(config), "store": store.where,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {**versions(), "kernelpilot": own_version()},
        "split": {"held_out_fraction": config.held_out_fraction, "by": "problem hash",
                  "rule": "policy_training.problems.split_of: int(hash[:8], 16) % 1000 < round(fraction * 1000)"},
        "sessions": len(trajectories), "rows": counts, "skipped": dict(sorted(skipped.items())),
        "problems": [problem_record(c, splits) for c in chosen]}
    (config.out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def write_rows(out: Path, chosen: list[Choice], splits: dict[str, Split]) -> dict[str, dict[str, int]]:
    rows = {form: {split: [] for split in Split} for form in FORMS}
    for choice in chosen:
        for form, row in rows_of(choice).items():
            if row is not None:
                rows[form][splits[choice.trajectory.problem.hash]].append(row)
    for form, by_split in rows.items():
        for split, found in by_split.items():
            write_jsonl(out / form / f"{split.value}.jsonl", found)
    return {form: {split.value: len(found) for split, found in by_split.items()} for form, by_split in rows.items()}


def problem_record(choice: Choice, splits: dict[str, Split]) -> dict:
    t, e = choice.trajectory, choice.evaluation
    return {"name": t.problem.name, "hash": t.problem.hash, "split": splits[t.problem.hash].value,
            "session": t.session, "policy": t.policy, "model": t.model, "evaluation_id": e.id, "turn": e.turn,
            "speedup_vs_eager": trusted_speedup(e, Versus.EAGER), "mode": e.mode, "mentors": list(choice.mentors)}


def trajectory_record(choice: Choice, splits: dict[str, Split]) -> dict:
    e = choice.evaluation
    return {**problem_record(choice, splits), "backend": choice.trajectory.backend.value, "size": e.size,
            "status": e.status.value, "flags": e.flags, "analysis": e.analysis, "kernel": e.source,
            "messages": list(choice.trajectory.messages)}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary_line(manifest: dict) -> str:
    rows = manifest["rows"]["messages"]
    left = ", ".join(f"{n} {reason}" for reason, n in manifest["skipped"].items()) or "none"
    return (f"{len(manifest['problems'])} problem(s) from {manifest['sessions']} session(s): "
            f"{rows['train']} train, {rows['held_out']} held-out row(s); sessions left out: {left}")
