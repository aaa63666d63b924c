"""The agent end to end: `kernelpilot optimize` against a real HTTP server speaking the
chat-completions protocol (only the model's text is scripted), real candidates in the
interpreter, a real history store and real checkpoints."""
import json
import socket
from pathlib import Path

import pytest

from agent.cli import main
from agent.graph import Budget, StopReason, better, build_graph, stop_reason
from agent.policy import Attempt
from tests.conftest import CANDIDATES, PROBLEMS
from tests.openai_server import ChatServer, Stall, Status, call, reply
from tools.history import HistoryStore
from tools.records import EvalStatus

SOFTMAX = PROBLEMS / "04_softmax_rows.py"
CANDIDATE = (CANDIDATES / "04_softmax_rows.py").read_text()
SNAPSHOT = Path(__file__).parent / "snapshots" / "agent_graph.mmd"
ANALYSIS = "## Performance analysis\nSoftmax over rows is memory-bound: one read and one write of x.\n"


@pytest.fixture(autouse=True)
def fast_retries(kernelpilot_home, monkeypatch):
    """Retries and timeouts short enough for a test, through the real config file."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "KERNELPILOT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    config = kernelpilot_home / "config.toml"
    config.write_text("[openai]\ntimeout_s = 1.5\nattempts = 3\nbackoff_s = 0.01\n")
    yield
    config.unlink()


def optimize(capsys, tmp_path, server_url: str, *extra: str, model: str = "test-model") -> tuple[int, dict | None, str]:
    code = main(["optimize", str(SOFTMAX), "--cpu", "--policy", "openai", "--base-url", server_url, "--model", model,
                 "--out", str(tmp_path / "out"), "--json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def tool_messages(request: dict) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


def test_graph_snapshot():
    assert build_graph().get_graph().draw_mermaid() == SNAPSHOT.read_text()


def test_a_run_reaches_a_submitted_correct_kernel(capsys, tmp_path):
    script = [reply(ANALYSIS + "Plan: measure the row kernel.", call("benchmark", {"code": CANDIDATE})),
              reply(ANALYSIS + "Plan: hand it back.", call("submit", {"code": CANDIDATE})),
              reply(ANALYSIS + "Done: the row kernel is the answer.")]
    with ChatServer(script) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0
    assert (summary["status"], summary["submitted"], summary["turns"], summary["stop_reason"]) == \
        ("correct", True, 3, StopReason.POLICY_DONE)
    assert Path(summary["best_code_path"]).read_text() == CANDIDATE
    first, second = server.requests[0], server.requests[1]
    assert "Performance analysis" in first["messages"][0]["content"]          # the rules and the turn format
    assert "torch.softmax(x, dim=-1)" in first["messages"][1]["content"]      # the reference source
    assert {tool["function"]["name"] for tool in first["tools"]} >= {"benchmark", "submit", "speedup_history"}
    assert tool_messages(second)[0].startswith("benchmark: correct")
    records = HistoryStore().records(with_source=True)
    mine = [r for r in records if r.session == summary["session_id"]]
    assert len(mine) == 2 and all(r.analysis.startswith("## Performance analysis") for r in mine)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 2 | submit | correct |" in report and "submitted after a final full check" in report


def test_a_turn_without_analysis_runs_no_tool(capsys, tmp_path):
    script = [reply("Let me just compile it.", call("compile", {"code": CANDIDATE})),
              reply(ANALYSIS + "Nothing more to try.")]
    with ChatServer(script) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0 and summary["status"] == "none" and summary["attempts"] == 0 and summary["turns"] == 2
    followup = server.requests[1]["messages"]
    assert tool_messages(server.requests[1]) == ["not run: the reply lacked the performance analysis"]
    assert followup[-1]["role"] == "user" and "did not begin with a `## Performance analysis`" in followup[-1]["content"]
    assert not [r for r in HistoryStore().records() if r.session == summary["session_id"]]


def test_malformed_tool_arguments_go_back_to_the_model(capsys, tmp_path):
    script = [reply(ANALYSIS, call("compile", "{not json")),
              reply(ANALYSIS, call("compile", {"code": 3})),
              reply(ANALYSIS, call("no_such_tool", {})),
              reply(ANALYSIS + "Giving up.")]
    with ChatServer(script) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0 and summary["turns"] == 4
    assert "arguments are not valid JSON" in tool_messages(server.requests[1])[0]
    assert "code: Input should be a valid string" in tool_messages(server.requests[2])[1]
    assert "no such tool" in tool_messages(server.requests[3])[2]


def test_server_errors_are_retried_until_it_recovers(capsys, tmp_path):
    with ChatServer([Status(500), Status(429), reply(ANALYSIS + "Done.")]) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0 and summary["turns"] == 1 and len(server.requests) == 3


def test_a_timeout_then_recovery_and_a_timeout_that_lasts(capsys, tmp_path):
    done = reply(ANALYSIS + "Done.")
    with ChatServer([Stall(3, done), done]) as server:
        code, summary, _ = optimize(capsys, tmp_path, server.url)
    assert code == 0 and summary["turns"] == 1
    with ChatServer([Stall(3, done)] * 3) as server:
        code, summary, err = optimize(capsys, tmp_path, server.url)
    assert code == 5 and summary["error"]["kind"] == "policy"      # --json: still exactly one object
    assert "timed out after 3 attempts" in summary["error"]["message"]
    assert "timed out after 3 attempts" in err and "Traceback" not in err


@pytest.mark.parametrize("script, flags, message", [
    ([], ("--model", "no-such-model"), "has no model 'no-such-model'"),
    ([Status(401)], (), "refused the API key"),
])
def test_fatal_endpoint_answers_are_one_clear_line(capsys, tmp_path, script, flags, message):
    with ChatServer(script) as server:
        model = flags[1] if flags else "test-model"
        code, summary, err = optimize(capsys, tmp_path, server.url, model=model)
    assert code == 5 and summary["error"] == {"message": summary["error"]["message"], "exit_code": 5, "kind": "policy"}
    assert message in err and len(err.strip().splitlines()) <= 2


def test_an_unreachable_endpoint(capsys, tmp_path):
    # A port bound here and never listened on: connections are refused, and no other process
    # can start listening on it meanwhile (a port just closed could be anyone's again).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        code, _, err = optimize(capsys, tmp_path, f"http://127.0.0.1:{held.getsockname()[1]}/v1")
    assert code == 5 and "connection failed after 3 attempts" in err


def test_a_session_resumes_where_its_budget_stopped_it(capsys, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"text": ANALYSIS, "tool_calls": [{"name": "speedup_history", "arguments": {"k": 2}}]},
        {"text": ANALYSIS, "tool_calls": [{"name": "compile", "arguments": "{bad"}]},
        {"text": ANALYSIS + "Done."}]}))
    base = ["optimize", "--cpu", "--json", "--out", str(tmp_path / "out")]
    assert main([*base, str(SOFTMAX), "--policy", f"replay:{script}", "--max-turns", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["turns"], first["stop_reason"]) == (1, StopReason.TURN_BUDGET)
    assert main([*base, "--resume", first["session_id"], "--max-turns", "5"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["session_id"], second["turns"], second["stop_reason"]) == \
        (first["session_id"], 3, StopReason.POLICY_DONE)


def test_resuming_an_unknown_session_is_a_usage_error(capsys):
    assert main(["optimize", "--resume", "s-nope"]) == 2
    assert "no session 's-nope'" in capsys.readouterr().err
    assert main(["optimize", "--resume", "s-nope", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "usage"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("kernelpilot 0")


def attempt(status: str, speedup: float | None) -> Attempt:
    return Attempt(turn=1, tool="benchmark", evaluation_id=1, code="", status=EvalStatus(status), runtime_ms=None,
                   speedup_vs_eager=speedup, speedup_vs_compile=None)


def test_the_best_is_the_fastest_correct_attempt():
    assert better(None, attempt("incorrect", 9.0)) is None
    untimed, slow, fast = attempt("correct", None), attempt("correct", 1.2), attempt("correct", 2.0)
    assert better(untimed, slow) is slow and better(slow, untimed) is slow
    assert better(slow, fast) is fast and better(fast, slow) is fast


@pytest.mark.parametrize("change, budget, finished, expected", [
    ({}, Budget(), False, None),
    ({"turns": 10}, Budget(max_turns=10), False, StopReason.TURN_BUDGET),
    ({"tokens": 5000}, Budget(max_tokens=4000), False, StopReason.TOKEN_BUDGET),
    ({"gpu_seconds": 61.0}, Budget(max_gpu_seconds=60), False, StopReason.GPU_BUDGET),
    ({"stale_turns": 3}, Budget(patience=3), False, StopReason.NO_IMPROVEMENT),
    ({"best": attempt("correct", 2.5).to_state()}, Budget(target_speedup=2.0), False, StopReason.TARGET_REACHED),
    ({"best": attempt("correct", 1.5).to_state()}, Budget(target_speedup=2.0), True, StopReason.POLICY_DONE),
    ({"mode": "chat"}, Budget(), True, StopReason.ASK_USER),
    # each limit is reached when the count equals it, not only past it
    ({"tokens": 4000}, Budget(max_tokens=4000), False, StopReason.TOKEN_BUDGET),
    ({"tokens": 3999}, Budget(max_tokens=4000), False, None),
    ({"gpu_seconds": 60.0}, Budget(max_gpu_seconds=60), False, StopReason.GPU_BUDGET),
    ({"gpu_seconds": 59.9}, Budget(max_gpu_seconds=60), False, None),
    ({"best": attempt("correct", 2.0).to_state()}, Budget(target_speedup=2.0), False, StopReason.TARGET_REACHED),
    ({"best": attempt("correct", 1.99).to_state()}, Budget(target_speedup=2.0), False, None),
    ({"turns": 9}, Budget(max_turns=10), False, None),
    ({"stale_turns": 2}, Budget(patience=3), False, None),
])
def test_stop_reasons(change, budget, finished, expected):
    state = {"turns": 1, "tokens": 0, "gpu_seconds": 0.0, "stale_turns": 0, "best": None, "mode": "optimize", **change}
    assert stop_reason(state, budget, finished) == expected


def test_langgraph_json_names_the_compiled_graph():
    from langgraph.graph.state import CompiledStateGraph
    from agent import studio
    spec = json.loads((Path(__file__).parent.parent / "langgraph.json").read_text())
    assert spec["graphs"]["kernelpilot"] == "./agent/studio.py:graph"
    assert isinstance(studio.graph, CompiledStateGraph)


def test_optimize_without_an_llm_uses_the_builtin_policy(capsys, tmp_path):
    code = main(["optimize", str(PROBLEMS / "07_rmsnorm.py"), "--cpu", "--json", "--out", str(tmp_path / "out")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["status"], summary["submitted"], summary["stop_reason"]) == ("correct", True, StopReason.POLICY_DONE)
    record = [r for r in HistoryStore().records(with_source=True) if r.session == summary["session_id"]][-1]
    assert record.policy == "builtin" and "no_custom_kernel" not in record.flags
    assert "@triton.jit" in Path(summary["best_code_path"]).read_text()


def test_bad_settings_and_scripts_are_one_clear_line(capsys, tmp_path, kernelpilot_home):
    (kernelpilot_home / "config.toml").write_text('[openai]\nattempts = "3"\n')
    assert main(["optimize", str(SOFTMAX), "--cpu", "--policy", "openai", "--model", "m"]) == 5
    assert "[openai] attempts must be a positive number" in capsys.readouterr().err
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"text": ANALYSIS, "tool_calls": [
        {"name": "benchmark", "code_file": "missing.py"}]}]}))
    assert main(["optimize", str(SOFTMAX), "--cpu", "--policy", f"replay:{script}"]) == 5
    assert "missing.py: no such code_file" in capsys.readouterr().err
    assert main(["optimize", "--resume", "s-x", "--model", "m"]) == 2


def test_a_kernel_that_only_compiled_is_not_the_answer(capsys, tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"text": ANALYSIS, "tool_calls": [
        {"name": "compile", "code_file": str(CANDIDATES / "04_softmax_rows.py")}]}]}))
    assert main(["optimize", str(SOFTMAX), "--cpu", "--json", "--policy", f"replay:{script}",
                 "--out", str(tmp_path / "out")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["attempts"], summary["best_code_path"]) == ("none", 1, None)
    assert not (tmp_path / "out" / "best.py").exists()


def test_chat_wraps_a_named_function_or_module_of_a_users_file(tmp_path):
    import torch
    from agent.cli.chat import wrap_problem
    from tools.problems import ProblemError, load_problem
    user = tmp_path / "utils.py"
    user.write_text("import torch\n\n\ndef slow_gelu(x):\n    return 0.5 * x * (1 + torch.tanh(x))\n\n\n"
                    "class Scale(torch.nn.Module):\n    def forward(self, x):\n        return 2 * x\n\n\n"
                    "def get_inputs():\n    return [torch.rand(4, 8)]\n\n\ndef get_init_inputs():\n    return []\n")
    x = torch.rand(4, 8)
    function = load_problem(wrap_problem(user, "slow_gelu"), size="full").build_model()
    assert torch.equal(function(x), 0.5 * x * (1 + torch.tanh(x)))
    module = load_problem(wrap_problem(user, "Scale"), size="full").build_model()
    assert torch.equal(module(x), 2 * x)
    with pytest.raises(ProblemError, match="no class or function named nope"):
        wrap_problem(user, "nope")
