"""Eager and torch.compile baselines, measured in clean workers and cached on disk.

Each baseline is the problem's own `Model` (as is, or under `torch.compile` in its
default mode) timed by the same loop as candidates (`tools/timing.py`), in a fresh
worker of the same sandbox on the same device — never in a candidate's process. The
cache key is (problem hash, size and any sizes the shrink heuristic set, device name,
torch and triton versions, timing settings); entries live as JSON files under
`$KERNELPILOT_HOME/cache/baselines/`, written atomically. Baselines run under the default
limits whatever `--timeout` a candidate gets, and a measurement that failed is reported but
never cached. An unreadable cache entry is measured again.

Each baseline's first call runs before the device lock is taken (`first_call`): that is where
torch.compile compiles, seconds to minutes of CPU for a whole network, during which other lanes
may measure; only the timed loop holds the lock. That one forward is the only device work a
neighbour's measurement can meet, as with the reward protocol's first trial (THREAT_MODEL.md).
"""
import hashlib

from tools import timing
from tools.device import DeviceInfo, versions
from tools.device_lock import DeviceLock
from tools.gpu_share import start_worker
from tools.files import write_atomic
from tools.records import Baselines, EvalStatus
from tools.reference import Reference
from tools.inputs import Distribution, draw, secret_seed
from tools.sandbox.contracts import Limits, Sandbox, Worker, cache_dir
from tools.sandbox.protocol import load_request
from tools.sandbox.replies import Failure, Reply, ask
from tools.sandbox.shm import Exchange
from tools.trial import run_trial


class BaselineStore:
    def __init__(self, sandbox: Sandbox, device: DeviceInfo, exchange: Exchange, config: timing.TimingConfig,
                 limits: Limits = Limits(), device_lock: DeviceLock | None = None):
        self.sandbox, self.device, self.exchange, self.config, self.limits = sandbox, device, exchange, config, limits
        self.device_lock = device_lock or DeviceLock.of(device)
        self.folder = cache_dir() / "baselines"

    def key(self, reference: Reference) -> str:
        """The cache's key: the problem's source and size (with what the shrink heuristic set, which no
        source holds), the device, the software and the timing settings."""
        problem, soft = reference.problem, versions()
        size = f"{problem.size}{list(problem.shrunk)}" if problem.shrunk else problem.size
        text = (f"{problem.hash}|{size}|{self.device.name}|torch {soft['torch']}|triton {soft['triton']}"
                f"|{self.config}")
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, reference: Reference, alone: bool = True) -> Baselines:
        """Cached, or measured now; `alone` as `timing.time_candidate` takes it."""
        path = self.folder / f"{self.key(reference)}.json"
        if path.exists():
            try:
                return Baselines.model_validate_json(path.read_text())
            except ValueError:
                path.unlink()   # a damaged entry: measure again
        baselines = self.measure(reference, alone)
        if baselines.eager is not None and baselines.compiled is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, baselines.model_dump_json(indent=1))
        return baselines

    def measure(self, reference: Reference, alone: bool = True) -> Baselines:
        notes = []
        eager = self._time(reference, torch_compile=False, notes=notes, alone=alone)
        compiled = self._time(reference, torch_compile=True, notes=notes, alone=alone)
        return Baselines(eager=eager, compiled=compiled, notes=notes)

    def _time(self, reference: Reference, torch_compile: bool, notes: list[str], alone: bool):
        label = "torch.compile" if torch_compile else "eager"
        problem = reference.problem
        worker = start_worker(self.sandbox)
        try:
            loaded = ask(worker, load_request(problem.source, "Model", problem.init_inputs(), torch_compile),
                         self.limits.load_s)
            if isinstance(loaded, Failure):
                notes.append(f"{label} baseline failed to load: {loaded.message}")
                return None
            first = self.first_call(worker, reference)
            if isinstance(first, Failure):
                notes.append(f"{label} baseline failed on its first call: {first.message}")
                return None
            self.sandbox.settle()       # warm workers still starting: waited for before the lock, not under it
            with self.device_lock:      # only the timed loop (its warm-up included) runs alone
                timed = timing.time_candidate(worker, self.exchange, reference, self.config, self.limits, alone=alone)
        finally:
            worker.close()
            self.exchange.collect()
        if timed.status is not EvalStatus.CORRECT:
            notes.append(f"{label} baseline unavailable: {timed.reason}")
            return None
        return timed.stats

    def first_call(self, worker: Worker, reference: Reference) -> Reply:
        """One untimed call on fresh inputs, outside the device lock (torch.compile compiles in it);
        its outputs are not judged: a baseline is the problem's own code, timed as it is."""
        inputs = draw(reference.problem, secret_seed(), Distribution.OWN, reference.device)
        container, expected = reference.run(inputs)
        reply, _ = run_trial(worker, self.exchange, container, expected, inputs, self.device.worker_device,
                             self.limits.first_call_s)
        return reply
