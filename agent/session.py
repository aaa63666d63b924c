"""One agent session: the problem, the sandbox, the toolbox, the policy and the checkpoints.

`optimize` and `chat` both open a session here. A session's id names its LangGraph
thread in the checkpoint database ($KERNELPILOT_HOME/sessions.db) and its evaluations in
the history store; `resume` rebuilds the live objects from what the checkpoint holds
(problem path, size, backend, policy), so a stopped run goes on where it stopped.

    with open_session(SessionOptions(problem=Path("p.py"), policy=PolicySpec.parse("replay:demo.json"))) as s:
        for update in s.stream(s.start_state()): ...
"""
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

from langgraph.checkpoint.sqlite import SqliteSaver

from agent.graph import (AgentContext, AgentState, Budget, RunMode, build_graph, initial_state, session_config,
                         stop_reason)
from agent.openai_policy import OpenAIConfig, OpenAIPolicy
from agent.policy import Backend, Policy, PolicyError
from agent.prompts import build_messages, exemplars
from agent.builtin import BuiltinPolicy
from agent.replay_policy import ReplayPolicy
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.history import HistoryStore, Origin
from tools.problems import load_problem
from tools.records import Mode
from tools.home import kernelpilot_home
from tools.sandbox.backends import SandboxKind, open_sandbox
from tools.sandbox.process import Limits
from tools.toolbox import Toolbox


@dataclass(frozen=True)
class PolicySpec:
    kind: str                       # "builtin", "openai" or "replay"
    script: str | None = None       # replay: the script's path
    model: str | None = None
    base_url: str | None = None

    @staticmethod
    def parse(text: str | None, model: str | None = None, base_url: str | None = None) -> "PolicySpec":
        """`builtin`, `openai`, `replay:FILE`; none given: openai when an endpoint is configured, else builtin."""
        if text is None:
            text = "openai" if (base_url or model or OpenAIConfig.configured()) else "builtin"
        kind, _, script = text.partition(":")
        if kind not in ("builtin", "openai", "replay") or (kind == "replay") != bool(script):
            raise PolicyError(f"unknown policy '{text}': use builtin, openai or replay:FILE")
        return PolicySpec(kind, str(Path(script).resolve()) if script else None, model, base_url)


def make_policy(spec: PolicySpec, store: HistoryStore, budget: Budget) -> Policy:
    if spec.kind == "replay":
        return ReplayPolicy.load(spec.script)
    if spec.kind == "openai":
        return OpenAIPolicy(OpenAIConfig.resolve(base_url=spec.base_url, model=spec.model))
    # The built-in policy benchmarks configurations and keeps two turns to submit and finish.
    return BuiltinPolicy(history=store, budget=max(1, budget.max_turns - 2))


@dataclass(frozen=True)
class SessionOptions:
    problem: Path | None = None             # None: resume `session_id` from its checkpoint
    policy: PolicySpec = PolicySpec("builtin")
    backend: Backend = Backend.TRITON
    mode: RunMode = RunMode.OPTIMIZE
    budget: Budget = field(default_factory=Budget)
    size: str = "auto"                      # auto | full | small
    sandbox: SandboxKind = SandboxKind.PROCESS
    db: str | None = None
    cuda_index: int = 0
    force_cpu: bool = False
    timeout_s: float | None = None
    session_id: str | None = None


class AgentSession:
    """The live objects of one session and its compiled, checkpointed graph."""

    def __init__(self, options: SessionOptions, context: AgentContext, graph, session_id: str, resumed: bool):
        self.options, self.context, self.graph, self.id, self.resumed = options, context, graph, session_id, resumed
        self.config = session_config(session_id, context.budget)

    def start_state(self) -> AgentState | dict | None:
        """The first input of a new session. A resumed one goes on from its checkpoint: None
        where a run was cut off mid-way, a cleared stop where it had ended."""
        if self.resumed:
            if self.graph.get_state(self.config).next:
                return None
            # An ended run goes on only where the budget given now leaves room for a turn.
            return None if stop_reason(self.state(), self.context.budget, finished=False) else {"stop": None}
        toolbox = self.context.toolbox
        messages = build_messages(toolbox.problem, self.options.backend, self.context.device,
                                  exemplars(toolbox.store, toolbox.problem))
        state = initial_state(str(toolbox.problem.path), toolbox.problem.size, self.options.backend,
                              self.options.mode, messages)
        return {**state, "policy": asdict(self.options.policy)}

    def stream(self, state_input) -> Iterator[dict]:
        """Graph updates as they happen: {node name: partial state}."""
        return self.graph.stream(state_input, self.config, context=self.context, stream_mode="updates")

    def state(self) -> dict:
        return self.graph.get_state(self.config).values


@contextmanager
def checkpoints() -> Iterator[SqliteSaver]:
    path = kernelpilot_home() / "sessions.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False)
    try:
        yield SqliteSaver(connection)
    finally:
        connection.close()


@contextmanager
def open_session(options: SessionOptions) -> Iterator[AgentSession]:
    with checkpoints() as saver:
        graph = build_graph(saver)
        options, resumed = resolve(options, graph)
        session_id = options.session_id or f"s-{uuid.uuid4().hex[:10]}"
        store = HistoryStore(options.db)
        policy = make_policy(options.policy, store, options.budget)
        device = detect(options.cuda_index, force_cpu=options.force_cpu)
        size = options.size if options.size != "auto" else ("full" if device.mode is Mode.GPU else "small")
        problem = load_problem(options.problem, size=size)
        limits = Limits() if options.timeout_s is None else Limits().with_timeout(options.timeout_s)
        with open_sandbox(options.sandbox, device.cuda_index, limits, warm=1) as sandbox:
            evaluator = Evaluator(sandbox, device, EvalConfig(limits=limits))
            toolbox = Toolbox(problem, evaluator, store, session_id, Origin(policy=policy.name, model=policy.model))
            context = AgentContext(policy=policy, toolbox=toolbox, device=device, budget=options.budget)
            yield AgentSession(options, context, graph, session_id, resumed)


def resolve(options: SessionOptions, graph) -> tuple[SessionOptions, bool]:
    """A resumed session takes its problem, size, backend and policy from its checkpoint."""
    if options.problem is not None:
        return options, False
    if options.session_id is None:
        raise PolicyError("name a problem file, or a session id to resume")
    saved = graph.get_state(session_config(options.session_id, options.budget)).values
    if not saved:
        raise PolicyError(f"no session '{options.session_id}' in {kernelpilot_home() / 'sessions.db'}")
    return replace(options, problem=Path(saved["problem_path"]), size=saved["size"],
                   backend=Backend(saved["backend"]), mode=RunMode(saved["mode"]),
                   policy=PolicySpec(**saved["policy"])), True
