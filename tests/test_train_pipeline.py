"""Training's stage 1 for real (issue 21): `collect` runs two mentors (the built-in policy and a
scripted one) through the bench machinery over two suite problems in the Triton interpreter,
into a real store and real checkpoints; `export` keeps only correct, unflagged traces, the best
per problem, with prompts equal to the agent's own `build_messages`; `sft` on the tiny offline
model lowers the loss (full fine-tuning) and changes the weights (DoRA+rsLoRA, merged); the
saved directory loads as `--policy local:DIR` and serves one agent turn, recorded in the session.

    pytest -q tests/test_train_pipeline.py
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.graph import Budget, StopReason
from agent.local_policy import LocalPolicy
from agent.policies import PolicySpec
from agent.policy import Backend
from agent.prompts import build_messages
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions
from policy_training.collect import CollectConfig, run_collect
from policy_training.config import PeftChoice
from policy_training.export import ExportConfig, export, read_jsonl
from policy_training.problems import split_of
from policy_training.sft import Device, SFTConfig, SFTForm, run_sft
from tests.conftest import CANDIDATES, PROBLEMS, ROOT
from tools.device import detect
from tools.history import HistoryStore
from tools.problems import load_problem

pytestmark = pytest.mark.slow
NAMES = ("01_scale_bias_relu_chain", "04_softmax_rows")


@dataclass(frozen=True)
class Collected:
    home: Path
    db: str
    out: Path


def replay_script(folder: Path) -> Path:
    """A second mentor: a PyTorch rewrite (correct on softmax, but flagged no_custom_kernel; wrong
    elsewhere), then the honest chain kernel (correct on problem 01, a turn later than the built-in's)."""
    turns = [{"text": "## Performance analysis\nTry the library op first.",
              "tool_calls": [{"name": "benchmark", "code_file": str(ROOT / "tests/cheats/cheat_reference_op.py")}]},
             {"text": "## Performance analysis\nOne fused elementwise pass.",
              "tool_calls": [{"name": "benchmark", "code_file": str(CANDIDATES / f"{NAMES[0]}.py")}]}]
    path = folder / "mentor.json"
    path.write_text(json.dumps({"model": "scripted-mentor", "turns": turns}))
    return path


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Collected:
    root = tmp_path_factory.mktemp("collected")
    home, before = root / "home", os.environ.get("KERNELPILOT_HOME")
    os.environ["KERNELPILOT_HOME"] = str(home)
    try:
        db = f"sqlite:///{home / 'history.db'}"
        config = CollectConfig(out=root / "runs", problems=tuple(PROBLEMS / f"{n}.py" for n in NAMES), cpu=True,
                               mentors=("builtin", f"replay:{replay_script(root)}"), max_turns=3, db=db)
        summary = run_collect(config, log=lambda line: None)
    finally:
        if before is None:
            os.environ.pop("KERNELPILOT_HOME")
        else:
            os.environ["KERNELPILOT_HOME"] = before
    assert summary["mentors"]["builtin"] == {"folder": str(root / "runs" / "builtin"), "rows": 2, "correct": 2,
                                             "failed": 0}
    return Collected(home, db, root / "runs")


@pytest.fixture
def exported(collected, tmp_path, monkeypatch) -> tuple[Path, dict]:
    monkeypatch.setenv("KERNELPILOT_HOME", str(collected.home))      # the collected sessions' checkpoints
    out = tmp_path / "data"
    return out, export(ExportConfig(out=out, db=collected.db, held_out_fraction=0.0))


def test_export_keeps_the_best_correct_unflagged_trace_per_problem_with_the_agents_prompt(collected, exported):
    out, manifest = exported
    problems = {p["name"]: p for p in manifest["problems"]}
    assert sorted(problems) == sorted(NAMES) and manifest["sessions"] == 4
    assert all(p["policy"] == "builtin" and p["split"] == split_of(p["hash"], 0.0).value for p in problems.values())
    assert problems[NAMES[0]]["mentors"] == ["builtin:builtin-0.1", "replay:scripted-mentor"]
    assert manifest["skipped"] == {"another mentor's was better": 1, "correct only with a disqualifying flag": 1}
    rows = read_jsonl(out / "messages" / "train.jsonl")
    store = HistoryStore(collected.db)
    device = detect(force_cpu=True)
    for row, record in zip(rows, manifest["problems"]):
        evaluation = store.records(ids=[record["evaluation_id"]], with_source=True)[0]
        problem = load_problem(PROBLEMS / f"{record['name']}.py", size="small")
        assert row["messages"][:2] == build_messages(problem, Backend.TRITON, device, [])
        assert evaluation.status.value == "correct" and not evaluation.flags and evaluation.session == record["session"]
        answer = row["messages"][2]["content"]
        assert answer.startswith("## Performance analysis") and answer.endswith(f"```python\n{evaluation.source.strip()}\n```")
    pairs = read_jsonl(out / "prompt_completion" / "train.jsonl")
    assert [p["prompt"] + p["completion"] for p in pairs] == [r["messages"] for r in rows]
    agent = read_jsonl(out / "agent" / "train.jsonl")
    assert len(agent) == 2 and all(a["messages"][:2] == r["messages"][:2] for a, r in zip(agent, rows))
    assert all(a["messages"][-1]["tool_calls"] and json.loads(a["tools"]) for a in agent)
    traces = read_jsonl(out / "trajectories.jsonl")
    assert all(t["messages"][0]["role"] == "system" and t["kernel"] for t in traces)


def test_export_of_one_mentor_only_and_of_an_empty_store(collected, tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELPILOT_HOME", str(collected.home))
    only = export(ExportConfig(out=tmp_path / "a", db=collected.db, policies=("replay",)))
    assert [p["name"] for p in only["problems"]] == [NAMES[0]] and only["sessions"] == 2
    empty = export(ExportConfig(out=tmp_path / "b", db=f"sqlite:///{tmp_path / 'empty.db'}"))
    assert empty["problems"] == [] and (tmp_path / "b" / "messages" / "train.jsonl").read_text() == ""


def test_sft_on_the_tiny_model_lowers_the_loss_and_its_model_serves_an_agent_turn(exported, tiny, tmp_path):
    data, _ = exported
    config = SFTConfig(model=str(tiny), data=data, out=tmp_path / "sft", max_steps=8, learning_rate=1e-2,
                       max_length=4096, device=Device.CPU)
    summary = run_sft(config, log=lambda line: None)
    assert summary["steps"] == 8 and summary["rows"] == 2
    assert summary["loss_last"] < summary["loss_first"] - 0.5, summary
    logged = read_jsonl(config.out / "metrics.jsonl")
    assert [entry["step"] for entry in logged if "loss" in entry] == list(range(1, 9))
    assert json.loads((config.out / "summary.json").read_text())["loss_first"] == summary["loss_first"]
    serve_one_turn(config.out / "model", tmp_path)


def serve_one_turn(model_dir: Path, tmp_path: Path) -> None:
    """The saved directory as `--policy local:DIR`: one turn through the real graph. A tiny model
    writes gibberish, so the graph refuses the turn for lacking the analysis: served and recorded."""
    spec = PolicySpec.parse(f"local:{model_dir}")
    with Runtime.open(RuntimeOptions(force_cpu=True, db=f"sqlite:///{tmp_path / 'serve.db'}")) as runtime:
        policy = spec.build(runtime.store, Budget(max_turns=1))
        assert isinstance(policy, LocalPolicy)
        policy.max_new_tokens = 16
        options = SessionOptions(problem=PROBLEMS / f"{NAMES[1]}.py", policy=spec, budget=Budget(max_turns=1))
        final = AgentSession.open(runtime, options, policy).run()
    assert final["turns"] == 1 and final["stop"] == StopReason.TURN_BUDGET and final["tokens"] > 16
    reply = final["messages"][2]    # its text may be empty: 16 tokens of a tiny model can all be special ones
    assert reply["role"] == "assistant" and "Performance analysis" in final["messages"][3]["content"]


def test_dora_rslora_sft_changes_the_weights_and_saves_them_merged(exported, tiny, tmp_path):
    from safetensors.torch import load_file

    data, _ = exported
    config = SFTConfig(model=str(tiny), data=data, out=tmp_path / "dora", max_steps=2, learning_rate=1e-2,
                       max_length=2048, peft=PeftChoice.DORA_RSLORA, lora_r=4, form=SFTForm.PROMPT_COMPLETION,
                       device=Device.CPU)
    run_sft(config, log=lambda line: None)
    before, after = load_file(tiny / "model.safetensors"), load_file(config.out / "model" / "model.safetensors")
    assert set(after) == set(before)                                  # merged: no adapter tensors left
    changed = [name for name in before if not (before[name] == after[name]).all()]
    assert any("proj" in name for name in changed), changed
