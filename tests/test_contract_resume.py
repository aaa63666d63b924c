"""The resume contract (agent/session.py): `--resume ID` goes on from the session's checkpoint —
the conversation, the turn count, the attempts and the best carry over, and no call is
evaluated twice — and a run killed in the middle of a turn runs that turn's tool calls on
resume instead of dropping them. A real `kernelpilot optimize`, real checkpoints, a real store,
a real SIGKILL."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from agent.cli import main
from agent.graph import Budget, build_graph, session_config
from agent.runtime import checkpoints
from tests.conftest import PROBLEMS, ROOT
from tools.history import HistoryStore

SOFTMAX = PROBLEMS / "04_softmax_rows.py"
HONEST = (ROOT / "tests" / "cheats" / "honest_softmax.py").read_text()
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


def saved_state(session_id: str) -> tuple[dict, tuple]:
    with checkpoints() as saver:
        snapshot = build_graph(saver).get_state(session_config(session_id, Budget()))
    return snapshot.values, snapshot.next


def write_script(tmp_path, turns: list[dict]):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": turns}))
    return script


def test_resume_goes_on_from_the_checkpoint_and_evaluates_nothing_twice(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    script = write_script(tmp_path, [
        {"text": ANALYSIS, "tool_calls": [{"name": "check_correctness", "arguments": {"code": HONEST}}]},
        {"text": ANALYSIS, "tool_calls": [{"name": "speedup_history", "arguments": {"k": 1}}]},
        {"text": ANALYSIS + "Done."}])
    base = ["optimize", "--cpu", "--json", "--db", db, "--out", str(tmp_path / "out")]
    assert main([*base, str(SOFTMAX), "--policy", f"replay:{script}", "--max-turns", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["turns"], first["attempts"], first["stop_reason"]) == (1, 1, "turn_budget")
    assert main([*base, "--resume", first["session_id"], "--max-turns", "5"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["session_id"], second["turns"], second["attempts"], second["status"], second["stop_reason"]) == \
        (first["session_id"], 3, 1, "correct", "policy_done")
    # turn 1's call and the first run's final check of its kernel: neither was run again
    assert HistoryStore(db).count([first["session_id"]]) == 2
    state, _ = saved_state(first["session_id"])
    roles = [m["role"] for m in state["messages"]]
    assert roles.count("system") == 1 and roles.count("assistant") == 3 == state["turns"]
    assert [(a["turn"], a["tool"]) for a in state["attempts"]] == [(1, "check_correctness"), (1, "final_check")]
    assert state["best"]["turn"] == 1


def test_a_run_killed_during_its_only_tool_call_runs_that_call_on_resume(capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'history.db'}"
    slow = tmp_path / "slow_honest.py"          # an honest kernel whose import takes seconds: time to kill
    slow.write_text("import time\ntime.sleep(6)\n" + HONEST)
    script = write_script(tmp_path, [
        {"text": ANALYSIS, "tool_calls": [{"name": "check_correctness", "code_file": str(slow)}]}])
    run = subprocess.Popen([sys.executable, "-m", "agent.cli", "optimize", str(SOFTMAX), "--cpu", "--db", db,
                            "--policy", f"replay:{script}", "--out", str(tmp_path / "first")],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    session_id = None
    for line in run.stdout:
        session_id = session_id or next(iter(re.findall(r"session (s-[0-9a-f]+)", line)), None)
        if "→ check_correctness" in line:
            break
    assert session_id, run.stderr.read()[-2000:]
    deadline = time.monotonic() + 60
    while saved_state(session_id)[1] != ("run_tools",):        # the turn is checkpointed, its call not yet done
        assert time.monotonic() < deadline, "the turn was never checkpointed"
        time.sleep(0.05)
    store = HistoryStore(db)
    assert store.count([session_id]) == 0, "the call finished before the kill: nothing was tested"
    os.killpg(run.pid, signal.SIGKILL)
    assert run.wait(timeout=30) == -signal.SIGKILL
    assert main(["optimize", "--resume", session_id, "--cpu", "--json", "--db", db,
                 "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["attempts"], summary["status"]) == (1, "correct")
    mine = sorted((r for r in store.records(with_source=True) if r.session == session_id), key=lambda r: r.id)
    assert [(r.source, r.call_id) for r in mine] == \
        [(slow.read_text(), "turn0-call0"), (slow.read_text(), "final_check")]      # the call, then its final check
    state, _ = saved_state(session_id)
    replies = [m for m in state["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in replies] == ["turn0-call0"]
    assert replies[0]["content"].startswith("check_correctness: correct")
