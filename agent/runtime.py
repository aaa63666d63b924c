"""The runtime: what a process opens once per device and reuses for every problem.

It holds the sandbox (with its warm workers and fork server), the device, the evaluator
(whose reference and baseline caches then serve every problem), the history store, and
the checkpoint database with the compiled agent graph. `chat`, `optimize`, the batch
runner and training rollouts open one and run sessions on it (`agent/session.py`).

    with Runtime.open(RuntimeOptions(force_cpu=True)) as runtime:
        for path in problems:
            with AgentSession.open(runtime, SessionOptions(problem=path), policy) as session:
                session.run()

The sandbox opens first: its fork server must start before this process touches CUDA,
and device detection (the device's name) initialises CUDA.
"""
import sqlite3
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from langgraph.checkpoint.sqlite import SqliteSaver

from agent.errors import CheckpointError
from agent.graph import build_graph
from tools.device import DeviceInfo, detect, pick_index
from tools.evaluator import EvalConfig, Evaluator
from tools.gpu_share import MemoryShare
from tools.history import HistoryStore
from tools.home import kernelpilot_home, prepare_home
from tools.records import Mode
from tools.sandbox.backends import SandboxKind, open_sandbox
from tools.sandbox.contracts import Limits, Sandbox


@dataclass(frozen=True)
class RuntimeOptions:
    sandbox: SandboxKind = SandboxKind.PROCESS
    db: str | None = None                   # history store URL; None: $KERNELPILOT_HOME/history.db
    cuda_index: int = 0
    force_cpu: bool = False                 # the Triton interpreter even where a GPU is present
    timeout_s: float | None = None          # wall-clock limit per sandbox step; None: the Limits defaults
    eval: EvalConfig = field(default_factory=EvalConfig)   # trials, timing, baselines (its limits are replaced)
    warm: int = 1                           # workers the sandbox keeps started ahead of need
    share: MemoryShare = field(default_factory=MemoryShare)   # lanes on this device (tools/gpu_share.py)

    def limits(self) -> Limits:
        return Limits() if self.timeout_s is None else Limits().with_timeout(self.timeout_s)


class Runtime:
    """Opened once, closed once; safe to reuse for thousands of sessions, also several at once
    on threads (its evaluator runs one evaluation at a time: see agent/bench/runner.py)."""

    def __init__(self, options: RuntimeOptions, sandbox: Sandbox, device: DeviceInfo, evaluator: Evaluator,
                 store: HistoryStore, saver: SqliteSaver):
        self.options, self.sandbox, self.device, self.evaluator, self.store = options, sandbox, device, evaluator, store
        self.saver, self.graph = saver, build_graph(saver)

    @staticmethod
    @contextmanager
    def open(options: RuntimeOptions = RuntimeOptions()) -> Iterator["Runtime"]:
        prepare_home()                          # an unwritable home, a bad URL or a corrupt file fails
        store = HistoryStore(options.db)        # before anything starts
        limits = options.limits()
        with ExitStack() as stack:
            stack.callback(store.engine.dispose)
            saver = stack.enter_context(checkpoints())
            index = pick_index(options.cuda_index, options.force_cpu)
            sandbox = stack.enter_context(open_sandbox(options.sandbox, index, limits, warm=options.warm))
            device = detect(options.cuda_index, force_cpu=options.force_cpu)
            evaluator = Evaluator(sandbox, device, replace(options.eval, limits=limits), share=options.share)
            yield Runtime(options, sandbox, device, evaluator, store, saver)

    def size(self, requested: str) -> str:
        """`auto` is full size on a GPU and the problem's small sizes in the interpreter."""
        return auto_size(self.device.mode) if requested == "auto" else requested


def auto_size(mode: Mode) -> str:
    """The size `auto` means on a device of this mode: full on a GPU, small in the interpreter."""
    return "full" if mode is Mode.GPU else "small"


class Checkpoints(SqliteSaver):
    """LangGraph's SQLite saver whose every database failure is a CheckpointError."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        super().__init__(connection)
        self.path = path

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        try:
            with super().cursor(transaction) as cursor:
                yield cursor
        except sqlite3.Error as error:
            raise CheckpointError(self.path, str(error)) from error


@contextmanager
def checkpoints() -> Iterator[SqliteSaver]:
    """The sessions' LangGraph checkpoints: $KERNELPILOT_HOME/sessions.db, checked at once
    (a corrupt file fails here, not in the middle of a turn)."""
    path = kernelpilot_home() / "sessions.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(path, check_same_thread=False)
    except sqlite3.Error as error:
        raise CheckpointError(path, str(error)) from error
    try:
        saver = Checkpoints(connection, path)
        with saver.cursor():        # creates the tables, or finds the file is not a database
            pass
        yield saver
    finally:
        connection.close()
