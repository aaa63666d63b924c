"""One runtime, many sessions (CPU interpreter, real sandbox, real store, real checkpoints):
the sandbox, evaluator and store opened once serve every problem; the policy object a
caller passes is the one that runs; a problem seen before reuses its cached reference;
every evaluation lands in the store under its own session; a killed session resumes.

    pytest -q tests/test_runtime.py
"""
import json
from dataclasses import replace

import pytest

from agent.errors import PolicyError
from agent.graph import Budget, StopReason, attempts_of, best_of
from agent.policies import BUILDERS, PolicyKind, PolicySpec
from agent.policy import PolicyTurn, ToolCall
from agent.replay_policy import ReplayPolicy
from agent.runtime import Runtime, RuntimeOptions
from agent.session import AgentSession, SessionOptions, resolve
from tests.conftest import CANDIDATES, PROBLEMS, TEST_LIMITS
from tools.evaluator import EvalConfig
from tools.records import EvalStatus

ANALYSIS = "## Performance analysis\nOne pass over the rows: memory-bound.\n"
NAMES = ("04_softmax_rows", "07_rmsnorm")


def checking(name: str, model: str) -> ReplayPolicy:
    code = (CANDIDATES / f"{name}.py").read_text()
    call = ToolCall(id="c1", name="check_correctness", arguments=json.dumps({"code": code}))
    return ReplayPolicy([PolicyTurn(text=ANALYSIS, tool_calls=(call,))], model=model)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    db = f"sqlite:///{tmp_path_factory.mktemp('runtime') / 'history.db'}"
    options = RuntimeOptions(db=db, force_cpu=True, eval=EvalConfig(trials=2, limits=TEST_LIMITS))
    with Runtime.open(options) as runtime:
        yield runtime


def run(runtime: Runtime, name: str, policy) -> AgentSession:
    options = SessionOptions(problem=PROBLEMS / f"{name}.py", budget=Budget(max_turns=2, patience=None))
    session = AgentSession.open(runtime, options, policy)
    session.run()
    return session


def test_one_runtime_serves_many_sessions_with_the_policies_passed_in(runtime):
    sandbox, evaluator = runtime.sandbox, runtime.evaluator
    sessions = [run(runtime, name, checking(name, model=f"script-{name}")) for name in NAMES]
    assert runtime.sandbox is sandbox and runtime.evaluator is evaluator
    assert len({s.id for s in sessions}) == 2
    for session, name in zip(sessions, NAMES):
        final = session.state()
        assert [a.status for a in attempts_of(final)] == [EvalStatus.CORRECT]
        assert best_of(final).tool == "check_correctness"
        assert final["stop"] == StopReason.POLICY_DONE      # the script's second turn has no tool call
        records = [r for r in runtime.store.records() if r.session == session.id]
        assert [(r.problem, r.model, r.status) for r in records] == [(name, f"script-{name}", EvalStatus.CORRECT)]
        assert records[0].analysis.startswith("## Performance analysis")
    assert runtime.store.count([s.id for s in sessions]) == 2


def test_a_problem_seen_before_reuses_its_reference(runtime):
    first = run(runtime, NAMES[0], checking(NAMES[0], model="again"))
    problem = first.context.toolbox.problem
    context = runtime.evaluator.context(problem)
    second = run(runtime, NAMES[0], checking(NAMES[0], model="again"))
    assert runtime.evaluator.context(second.context.toolbox.problem) is context
    assert second.id != first.id and runtime.store.count([second.id]) == 1


def test_a_session_resumes_by_id_on_a_new_runtime_with_its_saved_policy(runtime, tmp_path, monkeypatch):
    """Stopped on one runtime, resumed on another opened later on the same store and checkpoints."""
    monkeypatch.setenv("KERNELPILOT_HOME", str(runtime.saver.path.parent))   # the module's runtime's home, not this test's
    script = tmp_path / "script.json"
    code = (CANDIDATES / f"{NAMES[1]}.py").read_text()
    turn = {"text": ANALYSIS, "tool_calls": [{"name": "check_correctness", "arguments": {"code": code}}]}
    script.write_text(json.dumps({"turns": [turn, turn]}))
    spec = PolicySpec.parse(f"replay:{script}")
    options = SessionOptions(problem=PROBLEMS / f"{NAMES[1]}.py", policy=spec, budget=Budget(max_turns=1))
    session = AgentSession.open(runtime, options, spec.build(runtime.store, options.budget))
    assert session.run()["stop"] == StopReason.TURN_BUDGET
    later = replace(SessionOptions(session_id=session.id), budget=Budget(max_turns=3))
    with Runtime.open(runtime.options) as second:
        assert second.sandbox is not runtime.sandbox
        resolved, resumed = resolve(later, second.graph)
        assert resumed and resolved.policy == spec and resolved.problem == options.problem
        again = AgentSession.open(second, resolved, resolved.policy.build(second.store, later.budget), resumed=True)
        final = again.run()
    assert final["turns"] == 3 and len(attempts_of(final)) == 2 and final["stop"] == StopReason.POLICY_DONE
    assert runtime.store.count([session.id]) == 2


def test_every_policy_kind_has_a_builder_and_bad_names_are_refused():
    assert set(BUILDERS) == set(PolicyKind)
    assert PolicySpec.parse("builtin").kind is PolicyKind.BUILTIN
    assert PolicySpec.from_state(PolicySpec.parse("builtin").to_state()) == PolicySpec(PolicyKind.BUILTIN)
    for text in ("gpt", "replay", "builtin:x"):
        with pytest.raises(PolicyError, match="unknown policy"):
            PolicySpec.parse(text)
