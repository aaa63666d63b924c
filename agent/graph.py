"""The agent: a LangGraph loop of policy turns and tool runs, read top to bottom.

    state ─▶ policy_turn ─▶ route ─┬─▶ run_tools ─▶ route ─┬─▶ policy_turn ...
                                   └─▶ END                  └─▶ END

`policy_turn` asks the policy for its next turn and refuses the tool calls of a turn
that does not open with a performance analysis (the policy is told, and the turn
counts against the budget). `run_tools` runs the accepted calls through the toolbox
(each evaluation recorded in the history store with the turn's analysis; on resume, the
calls a killed run had recorded are taken from the store, not run again) and keeps the
best candidate the trust rules allow (`tools/trust.py`). Both end by asking `stop_reason`
whether to stop: the target speedup reached, a budget spent (turns, GPU-seconds, tokens), too many turns without
improvement, or the policy finished (in chat: it hands back to the user). `route` is
the one router. State is checkpointed (SQLite), so a session resumes by its id.

    graph = build_graph(SqliteSaver(conn))
    for update in graph.stream(initial_state(...), session_config(sid, budget), context=AgentContext(...),
                               stream_mode="updates"): ...
"""
import json
import operator
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.policy import Attempt, Backend, Policy, PolicyTurn, ToolCall, TurnInput, has_analysis
from agent.prompts import correction
from tools.device import DeviceInfo
from tools.records import Mode
from tools.toolbox import EvaluationReport, ProfileReport, SubmitReport, ToolError, Toolbox
from tools.trust import Use, Versus, allowed, trusted_runtime_ms, trusted_speedup


class RunMode(StrEnum):
    OPTIMIZE = "optimize"
    CHAT = "chat"


class StopReason(StrEnum):
    TARGET_REACHED = "target_reached"
    TURN_BUDGET = "turn_budget"
    GPU_BUDGET = "gpu_budget"
    TOKEN_BUDGET = "token_budget"
    NO_IMPROVEMENT = "no_improvement"
    POLICY_DONE = "policy_done"
    ASK_USER = "ask_user"


# Tools whose verdict covers every trial (compile runs one forward: it cannot make a kernel the best).
JUDGED_TOOLS = ("check_correctness", "benchmark", "submit")


@dataclass(frozen=True)
class Budget:
    max_turns: int = 10
    target_speedup: float | None = None     # vs eager
    max_gpu_seconds: float | None = None
    max_tokens: int | None = None
    patience: int | None = 5                # turns in a row without a better candidate


class AgentState(TypedDict, total=False):
    problem_path: str
    size: str
    backend: str
    mode: str
    policy: dict                                    # agent.policies.PolicySpec.to_state(), to rebuild it on resume
    messages: Annotated[list[dict], operator.add]   # the conversation, OpenAI chat format
    attempts: Annotated[list[dict], operator.add]   # Attempt.to_state(), in order; read with attempts_of
    pending: list[dict]                             # the accepted tool calls of the last turn (ToolCall as dicts)
    best: dict | None                               # the best correct attempt so far; read with best_of
    submitted: int | None                           # evaluation id of the accepted submit
    turns: int
    tokens: int
    gpu_seconds: float
    stale_turns: int
    stop: str | None


@dataclass
class AgentContext:
    """What a run needs that is not state: live objects, rebuilt when a session resumes."""

    policy: Policy
    toolbox: Toolbox
    device: DeviceInfo
    budget: Budget


def policy_turn(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    ctx = runtime.context
    turn = ctx.policy.turn(turn_input(state, ctx))
    update = {"turns": state["turns"] + 1, "tokens": state["tokens"] + turn.tokens, "pending": [],
              "messages": [assistant_message(turn)]}
    if not has_analysis(turn.text):
        update["stale_turns"] = state["stale_turns"] + 1
        update["messages"] += [tool_message(call.id, "not run: the reply lacked the performance analysis")
                               for call in turn.tool_calls]
        update["messages"].append({"role": "user", "content": correction(len(turn.tool_calls))})
    elif turn.tool_calls:
        update["pending"] = [asdict(call) for call in turn.tool_calls]
    finished = has_analysis(turn.text) and not turn.tool_calls
    # A turn's accepted tool calls always run; the budget is looked at after them.
    update["stop"] = None if update["pending"] else stop_reason({**state, **update}, ctx.budget, finished)
    return update


def run_tools(state: AgentState, runtime: Runtime[AgentContext]) -> dict:
    ctx = runtime.context
    analysis = state["messages"][-1].get("content") or ""
    messages, attempts, best, submitted, seconds = [], [], best_of(state), state.get("submitted"), 0.0
    # A run killed mid-turn recorded some of these calls already: those records are reused, not run again.
    ctx.toolbox.reuse_unseen({a.evaluation_id for a in attempts_of(state)})
    for call in map(pending_call, state["pending"]):
        started = time.monotonic()
        arguments = parse_arguments(call)
        report = (arguments if isinstance(arguments, ToolError)
                  else ctx.toolbox.call(call.name, arguments, analysis=analysis, turn=state["turns"], call_id=call.id))
        messages.append(tool_message(call.id, report.text()))
        if isinstance(report, ProfileReport) and ctx.device.mode is Mode.GPU:
            seconds += time.monotonic() - started      # profiling (and Nsight Compute) holds the GPU too
        if isinstance(report, (EvaluationReport, SubmitReport)):
            attempt = attempt_record(state["turns"], call.name, report, arguments["code"])
            attempts.append(attempt)
            seconds += report.result.seconds if report.result.mode is Mode.GPU else 0.0
            if call.name in JUDGED_TOOLS:
                best = better(best, attempt)
            if isinstance(report, SubmitReport) and report.accepted:
                submitted = report.evaluation_id
    improved = best != best_of(state)
    update = {"messages": messages, "attempts": [a.to_state() for a in attempts], "pending": [],
              "best": best and best.to_state(), "submitted": submitted,
              "gpu_seconds": state["gpu_seconds"] + seconds,
              "stale_turns": 0 if improved else state["stale_turns"] + 1}
    update["stop"] = stop_reason({**state, **update}, ctx.budget, finished=False)
    return update


def route(state: AgentState) -> str:
    if state.get("stop"):
        return END
    return "run_tools" if state.get("pending") else "policy_turn"


def build_graph(checkpointer=None):
    builder = StateGraph(AgentState, context_schema=AgentContext)
    builder.add_node("policy_turn", policy_turn)
    builder.add_node("run_tools", run_tools)
    builder.add_edge(START, "policy_turn")
    builder.add_conditional_edges("policy_turn", route, ["run_tools", "policy_turn", END])
    builder.add_conditional_edges("run_tools", route, ["policy_turn", END])
    return builder.compile(checkpointer=checkpointer)


# ---- the pure pieces the nodes use ------------------------------------------------------------

def stop_reason(state: AgentState, budget: Budget, finished: bool) -> str | None:
    best = best_of(state)
    speedup = best and trusted_speedup(best, Versus.EAGER)
    if budget.target_speedup is not None and speedup is not None and speedup >= budget.target_speedup:
        return StopReason.TARGET_REACHED.value
    if finished:
        return (StopReason.ASK_USER if state.get("mode") == RunMode.CHAT else StopReason.POLICY_DONE).value
    if state["turns"] >= budget.max_turns:
        return StopReason.TURN_BUDGET.value
    if budget.max_tokens is not None and state["tokens"] >= budget.max_tokens:
        return StopReason.TOKEN_BUDGET.value
    if budget.max_gpu_seconds is not None and state["gpu_seconds"] >= budget.max_gpu_seconds:
        return StopReason.GPU_BUDGET.value
    if budget.patience is not None and state["stale_turns"] >= budget.patience:
        return StopReason.NO_IMPROVEMENT.value
    return None


def attempts_of(state: AgentState) -> list[Attempt]:
    return [Attempt.from_state(a) for a in state.get("attempts", [])]


def best_of(state: AgentState) -> Attempt | None:
    best = state.get("best")
    return Attempt.from_state(best) if best else None


def better(best: Attempt | None, attempt: Attempt) -> Attempt | None:
    """The faster of two attempts the trust rules allow as best (tools/trust.py: correct, no
    disqualifying flag); a timed one beats an untimed one; ties keep the first."""
    if not allowed(attempt, Use.BEST):
        return best
    if best is None:
        return attempt
    mine, theirs = trusted_speedup(attempt, Versus.EAGER), trusted_speedup(best, Versus.EAGER)
    return attempt if mine is not None and (theirs is None or mine > theirs) else best


def pending_call(saved: dict) -> ToolCall:
    return ToolCall(id=saved["id"], name=saved["name"], arguments=saved["arguments"])


def parse_arguments(call: ToolCall) -> dict | ToolError:
    """A tool call's JSON arguments, or the error that goes back to the model."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as error:
        return ToolError(tool=call.name, message=f"arguments are not valid JSON ({error}); send a JSON object")
    if not isinstance(arguments, dict):
        return ToolError(tool=call.name, message="arguments must be a JSON object")
    return arguments


def attempt_record(turn: int, tool: str, report: EvaluationReport | SubmitReport, code: str) -> Attempt:
    """The attempt as the policy sees it: times and speedups only where the trust rules believe them."""
    r = report.result
    return Attempt(turn=turn, tool=tool, evaluation_id=report.evaluation_id, code=code, status=r.status,
                   runtime_ms=trusted_runtime_ms(r), speedup_vs_eager=trusted_speedup(r, Versus.EAGER),
                   speedup_vs_compile=trusted_speedup(r, Versus.COMPILE), flags=tuple(f.value for f in r.flags),
                   reason=r.reason[:500], second_size=r.second_size.text()[:500] if r.second_size else "")


def turn_input(state: AgentState, ctx: AgentContext) -> TurnInput:
    return TurnInput(problem=ctx.toolbox.problem, backend=Backend(state["backend"]), device=ctx.device,
                     messages=state["messages"], tools=ctx.toolbox.schemas(), attempts=attempts_of(state),
                     turn=state["turns"])


def assistant_message(turn: PolicyTurn) -> dict:
    message = {"role": "assistant", "content": turn.text}
    if turn.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in turn.tool_calls]
    return message


def tool_message(call_id: str, text: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def initial_state(problem_path: str, size: str, backend: Backend, mode: RunMode, messages: list[dict]) -> AgentState:
    return AgentState(problem_path=problem_path, size=size, backend=backend.value, mode=mode.value,
                      messages=messages, attempts=[], pending=[], best=None, submitted=None, turns=0, tokens=0,
                      gpu_seconds=0.0, stale_turns=0, stop=None)


def session_config(session_id: str, budget: Budget) -> dict:
    # Each turn is at most two graph steps; the budget, not the recursion limit, ends a run.
    return {"configurable": {"thread_id": session_id}, "recursion_limit": 2 * budget.max_turns + 10}
