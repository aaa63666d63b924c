"""One agent session: a problem, a policy and a toolbox on an open runtime, with checkpoints.

A session's id names its LangGraph thread in the runtime's checkpoint database and its
evaluations in the history store; `resolve` rebuilds a stopped session's options (problem
path, size, backend, mode, policy) from its checkpoint, so it goes on where it stopped.
The runtime (`agent/runtime.py`) is opened once and serves any number of sessions; the
policy is an object the caller built (`agent/policies.py` builds one from a named kind).

    with Runtime.open(RuntimeOptions()) as runtime:
        session = AgentSession.open(runtime, SessionOptions(problem=Path("p.py")), BuiltinPolicy())
        final = session.run()

`open_session(options)` does all of it for a single session (`kernelpilot optimize`); `chat`
keeps one runtime for the conversation and opens a session on it per problem.
"""
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from agent.errors import SessionError
from agent.graph import AgentContext, AgentState, Budget, RunMode, initial_state, session_config, stop_reason
from agent.policies import PolicyKind, PolicySpec
from agent.policy import Backend, Policy
from agent.prompts import build_messages, exemplars
from agent.runtime import Runtime, RuntimeOptions
from tools.history import Origin
from tools.home import kernelpilot_home
from tools.problems import Problem, load_problem
from tools.sandbox.backends import SandboxKind
from tools.toolbox import Toolbox

@dataclass(frozen=True)
class SessionOptions:
    problem: Path | None = None             # None: resume `session_id` from its checkpoint
    policy: PolicySpec = PolicySpec(PolicyKind.BUILTIN)
    backend: Backend = Backend.TRITON
    mode: RunMode = RunMode.OPTIMIZE
    budget: Budget = field(default_factory=Budget)
    size: str = "auto"                      # auto | full | small
    session_id: str | None = None
    # Where it runs, for `open_session` (a caller with its own runtime ignores these).
    sandbox: SandboxKind = SandboxKind.PROCESS
    db: str | None = None
    cuda_index: int = 0
    force_cpu: bool = False
    timeout_s: float | None = None

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(sandbox=self.sandbox, db=self.db, cuda_index=self.cuda_index,
                              force_cpu=self.force_cpu, timeout_s=self.timeout_s)


class AgentSession:
    """The live objects of one session and its compiled, checkpointed graph."""

    def __init__(self, runtime: Runtime, options: SessionOptions, context: AgentContext, session_id: str,
                 resumed: bool):
        self.runtime, self.options, self.context, self.id, self.resumed = runtime, options, context, session_id, resumed
        self.graph = runtime.graph
        self.config = session_config(session_id, context.budget)

    @staticmethod
    def open(runtime: Runtime, options: SessionOptions, policy: Policy, problem: Problem | None = None,
             resumed: bool = False) -> "AgentSession":
        """A session on `runtime`. `options` must be resolved (see `resolve`); `problem`, when
        given, is used as loaded (a batch run that shrinks its problems) instead of loading
        `options.problem` at the runtime's size."""
        session_id = options.session_id or f"s-{uuid.uuid4().hex[:10]}"
        problem = problem or load_problem(options.problem, size=runtime.size(options.size))
        toolbox = Toolbox(problem, runtime.evaluator, runtime.store, session_id,
                          Origin(policy=policy.name, model=policy.model))
        context = AgentContext(policy=policy, toolbox=toolbox, device=runtime.device, budget=options.budget)
        return AgentSession(runtime, replace(options, session_id=session_id), context, session_id, resumed)

    def start_state(self) -> AgentState | dict | None:
        """The first input of a new session. A resumed one goes on from its checkpoint: None
        where a run was cut off mid-way, a cleared stop where it had ended."""
        if self.resumed:
            if self.cut_mid_run():
                return None
            # An ended run goes on only where the budget given now leaves room for a turn.
            return None if stop_reason(self.state(), self.context.budget, finished=False) else {"stop": None}
        toolbox = self.context.toolbox
        messages = build_messages(toolbox.problem, self.options.backend, self.context.device,
                                  exemplars(toolbox.store, toolbox.problem))
        state = initial_state(str(toolbox.problem.path), toolbox.problem.size, self.options.backend,
                              self.options.mode, messages)
        return {**state, "policy": self.options.policy.to_state()}

    def cut_mid_run(self) -> bool:
        """Whether the last run stopped before its end: its checkpoint has tasks left to run, or
        tasks whose writes were saved without the checkpoint that applies them (a kill between
        the two commits). `StateSnapshot.next` leaves the latter out, and any input but None
        would drop their writes (after the first step: the session's whole initial state)."""
        return bool(self.graph.get_state(self.config).tasks)

    def stream(self, state_input) -> Iterator[dict]:
        """Graph updates as they happen: {node name: partial state}."""
        return self.graph.stream(state_input, self.config, context=self.context, stream_mode="updates")

    def run(self, on_update: Callable[[dict], None] | None = None) -> dict:
        """Drive the session to its stop (or on from its checkpoint) and return the final state."""
        for update in self.stream(self.start_state()):
            if on_update is not None:
                on_update(update)
        return self.state()

    def state(self) -> dict:
        return self.graph.get_state(self.config).values


def resolve(options: SessionOptions, graph) -> tuple[SessionOptions, bool]:
    """A resumed session takes its problem, size, backend, mode and policy from its checkpoint."""
    if options.problem is not None:
        return options, False
    if options.session_id is None:
        raise SessionError("name a problem file, or a session id to resume")
    saved = graph.get_state(session_config(options.session_id, options.budget)).values
    if not saved:
        raise SessionError(f"no session '{options.session_id}' in {kernelpilot_home() / 'sessions.db'}")
    return replace(options, problem=Path(saved["problem_path"]), size=saved["size"],
                   backend=Backend(saved["backend"]), mode=RunMode(saved["mode"]),
                   policy=PolicySpec.from_state(saved["policy"])), True


@contextmanager
def open_session(options: SessionOptions) -> Iterator[AgentSession]:
    """A runtime of its own and one session on it, with the policy its options name."""
    with Runtime.open(options.runtime_options()) as runtime:
        options, resumed = resolve(options, runtime.graph)
        policy = options.policy.build(runtime.store, options.budget)
        yield AgentSession.open(runtime, options, policy, resumed=resumed)
