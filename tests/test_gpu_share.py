"""Lanes sharing one GPU's memory (tools/footprint.py, tools/gpu_share.py), on the CPU: the
footprint estimate of our own fixture problems (tests/fixtures/memory, sizes in their
docstrings), heavy or light for a device size and a lane count, the shared/exclusive lock
and its turnstile between threads, a heavy problem's reference gone from the evaluator after
its evaluation, a worker that could not start for lack of memory tried once more, and real
`--cpu --lanes 3` lane processes with a stated device size, where no heavy evaluation ever
overlaps another while light ones do.

    pytest -q tests/test_gpu_share.py
"""
import gc
import json
import math
import threading
import time
import weakref
from pathlib import Path

import pytest

from agent.bench.lanes import run_bench
from agent.bench.runner import FATAL, BenchOptions
from agent.graph import Budget
from agent.policies import PolicySpec
from agent.runtime import RuntimeOptions
from tests.conftest import FIXTURES, TEST_LIMITS
from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.footprint import FACTOR, LANE_OVERHEAD, MARGIN, Footprint, estimate, heavy, lane_share
from tools.gpu_share import GpuMemoryError, MemoryLock, MemoryShare, start_worker
from tools.problems import load_problem
from tools.records import EvalStatus
from tools.sandbox.contracts import GiB, SandboxError
from tools.sandbox.process import ProcessSandbox

MEMORY = FIXTURES / "memory"
KIB, MIB = 1024, 1024**2


def fixture(name: str):
    return load_problem(MEMORY / f"{name}.py", size="small")


def device_for(share: int, lanes: int) -> int:
    """A device size whose lane share is `share` (give or take a few bytes)."""
    size = math.ceil((share * lanes + lanes * LANE_OVERHEAD) / (1 - MARGIN)) + 64
    assert share <= lane_share(size, lanes) < share + KIB
    return size


# ---- the estimate -----------------------------------------------------------------------------

def test_the_estimate_counts_inputs_parameters_and_outputs_of_our_fixtures():
    scale = estimate(fixture("01_light_scale"))
    assert (scale.input_bytes, scale.param_bytes, scale.output_bytes) == (32 * KIB, 0, 32 * KIB)
    assert scale.output_measured and scale.total_bytes == FACTOR * 64 * KIB
    linear = estimate(fixture("06_heavy_linear"))
    assert (linear.input_bytes, linear.param_bytes, linear.output_bytes) == (128 * KIB, (512 * 256 + 256) * 4, 64 * KIB)
    assert estimate(fixture("05_heavy_relu")).total_bytes == FACTOR * 512 * KIB


def test_a_forward_the_meta_device_cannot_run_takes_the_stand_in():
    stand_in = estimate(fixture("08_stand_in_output"))
    assert stand_in.output_bytes == stand_in.input_bytes == 32 * KIB and not stand_in.output_measured
    assert "meta forward raised" in stand_in.note


def test_a_problem_that_needs_real_tensors_is_not_estimable_and_so_heavy():
    unknown = estimate(fixture("07_not_estimable"))
    assert unknown.total_bytes is None and ".item()" in unknown.note
    assert heavy(unknown, 80 * GiB, 2) and not heavy(unknown, 80 * GiB, 1)


def test_the_estimate_allocates_nothing_and_leaves_the_rng_alone():
    import torch
    torch.manual_seed(7)
    before = torch.rand(3)
    torch.manual_seed(7)
    estimate(fixture("06_heavy_linear"))        # builds the model after manual_seed(42), on meta
    assert torch.equal(torch.rand(3), before)


# ---- heavy or light ---------------------------------------------------------------------------

def test_heavy_is_over_one_lanes_share_of_the_device():
    share = lane_share(80 * GiB, 6)
    assert share == (int(80 * GiB * (1 - MARGIN)) - 6 * LANE_OVERHEAD) // 6
    at = Footprint(share // FACTOR, 0, 0)                   # FACTOR * inputs == share, give or take
    over = Footprint(share // FACTOR + 1, 0, 0)
    assert not heavy(at, 80 * GiB, 6) and heavy(over, 80 * GiB, 6)
    assert not heavy(over, 80 * GiB, 1)                     # one lane: nothing to share
    assert not heavy(over, 80 * GiB, 2)                     # two lanes: a bigger share
    assert lane_share(4 * GiB, 6) == 0                      # too many lanes for the device: all heavy


# ---- the lock ---------------------------------------------------------------------------------

def hold(lock_dir: Path, exclusive: bool, seconds: float, events: list, name: str) -> None:
    with MemoryLock(lock_dir, "test").hold(exclusive):      # a lock object each: its own open files
        start = time.monotonic()
        time.sleep(seconds)
        events.append((name, exclusive, start, time.monotonic()))


def overlap(a, b) -> bool:
    return a[2] < b[3] and b[2] < a[3]


def test_exclusive_holds_never_overlap_and_shared_ones_do(tmp_path):
    events, threads = [], []
    for index, exclusive in enumerate([False, False, True, False, False, True]):
        threads.append(threading.Thread(target=hold, args=(tmp_path, exclusive, 0.3, events, f"t{index}")))
        threads[-1].start()
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert len(events) == 6
    for event in events:
        if event[1]:
            assert not any(overlap(event, other) for other in events if other is not event), events
    shared = [e for e in events if not e[1]]
    assert any(overlap(a, b) for a in shared for b in shared if a is not b), events


def test_the_turnstile_lets_a_waiting_exclusive_in_before_later_shared_ones(tmp_path):
    events = []
    first = threading.Thread(target=hold, args=(tmp_path, False, 0.6, events, "reader"))
    writer = threading.Thread(target=hold, args=(tmp_path, True, 0.2, events, "writer"))
    late = threading.Thread(target=hold, args=(tmp_path, False, 0.1, events, "late reader"))
    first.start()
    time.sleep(0.15)
    writer.start()                  # waits for the reader, holding the gate
    time.sleep(0.15)
    late.start()                    # the reader still holds: without the gate it would go in now
    for thread in (first, writer, late):
        thread.join()
    by = {name: (name, exclusive, start, end) for name, exclusive, start, end in events}
    assert by["writer"][2] >= by["reader"][3] and by["late reader"][2] >= by["writer"][3], events


def test_a_hold_is_reentrant_within_a_thread(tmp_path):
    lock = MemoryLock(tmp_path, "test")
    with lock.hold(exclusive=False):
        with lock.hold(exclusive=True) as waited:       # another open file would wait for itself
            assert waited == 0.0


# ---- the evaluator ----------------------------------------------------------------------------

LINEAR = """import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x)
"""
RELU = """import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def forward(self, x):
        return torch.relu(x)
"""
SCALE = """import torch.nn as nn

class ModelNew(nn.Module):
    def forward(self, x):
        return x * 2.0 + 1.0
"""


@pytest.mark.slow
def test_a_heavy_reference_leaves_the_evaluator_after_its_evaluation_and_a_light_one_stays(cpu_sandbox, tmp_path):
    config = EvalConfig(trials=2, limits=TEST_LIMITS)
    shared = Evaluator(cpu_sandbox, detect(force_cpu=True), config,
                       share=MemoryShare(lanes=2, device_bytes=device_for(MIB, 2), lock_dir=tmp_path))
    linear, scale = fixture("06_heavy_linear"), fixture("01_light_scale")
    model = weakref.ref(shared.context(linear).reference.model)
    assert shared.evaluate(linear, LINEAR).status is EvalStatus.CORRECT
    gc.collect()
    assert linear not in shared._contexts and model() is None      # its tensors are gone, floor or not
    assert shared.evaluate(scale, SCALE).status is EvalStatus.CORRECT
    assert scale in shared._contexts
    alone = Evaluator(cpu_sandbox, detect(force_cpu=True), config)   # one lane: kept as before
    assert alone.evaluate(linear, LINEAR).status is EvalStatus.CORRECT and linear in alone._contexts


class OutOfMemoryAtStart(ProcessSandbox):
    """The process sandbox, whose next `failures` workers fail to start as a CUDA worker does
    when its device is full (only a GPU can make that happen for real)."""

    def __init__(self, failures: int, message: str = "sandbox worker failed to start: RuntimeError: CUDA error: "
                                                     "out of memory\n(at torch.cuda.set_device)"):
        super().__init__(None, TEST_LIMITS, warm=0)
        self.failures, self.message = failures, message

    def worker(self):
        if self.failures:
            self.failures -= 1
            raise SandboxError(self.message)
        return super().worker()


@pytest.mark.slow
def test_a_worker_that_could_not_start_for_memory_is_tried_once_more():
    with OutOfMemoryAtStart(failures=1) as sandbox:
        worker = start_worker(sandbox)
        assert worker.wait_ready() is not None
        worker.close()
    with OutOfMemoryAtStart(failures=2) as sandbox, pytest.raises(GpuMemoryError, match="twice: sandbox worker"):
        start_worker(sandbox)
    with OutOfMemoryAtStart(failures=1, message="sandbox worker failed to start: seccomp") as sandbox, \
            pytest.raises(SandboxError, match="seccomp"):
        start_worker(sandbox)                     # any other failure of the sandbox is the sandbox's
    assert not issubclass(GpuMemoryError, FATAL)  # the row fails, the run goes on


# ---- real lanes -------------------------------------------------------------------------------

def waiting(lock_dir: Path) -> int:
    """Processes blocked on the admission's lock files (the kernel's /proc/locks: '->' marks a waiter)."""
    inodes = {str(path.stat().st_ino) for path in lock_dir.glob("kernelpilot-memory-*")}
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and line.split()[-3].rsplit(":", 1)[-1] in inodes)


@pytest.mark.slow
def test_three_lanes_never_overlap_a_heavy_evaluation_and_overlap_light_ones(tmp_path):
    """`--cpu --lanes 3` (the code path of `--gpus 0 --lanes 3`) with a device of which a lane's
    share is 1 MiB: 01-03 are light (320 KiB each), 05 and 07 heavy (2.5 MiB, not estimable).
    The test itself is a heavy neighbour at first: it holds the lock until the three lanes, a
    light problem each, wait for it (the kernel's lock table says so); then they go in together."""
    log, script = tmp_path / "admissions.jsonl", tmp_path / "relu.json"
    script.write_text(json.dumps({"turns": [{"text": "## Performance analysis\nA ReLU.", "tool_calls": [
        {"name": "check_correctness", "arguments": {"code": RELU}}]}]}))
    share = MemoryShare(device_bytes=device_for(MIB, 3), lock_dir=tmp_path, log=log)
    runtime = RuntimeOptions(force_cpu=True, share=share, eval=EvalConfig(trials=2, limits=TEST_LIMITS))
    options = BenchOptions(sources=(MEMORY,), out=tmp_path / "run", policy=PolicySpec.parse(f"replay:{script}"),
                           budget=Budget(max_turns=1), only=("01_*", "02_*", "03_*", "05_*", "07_*"),
                           runtime=runtime, lanes=(None,) * 3)
    started, rows = [], []
    with MemoryLock(tmp_path, "cpu-interpreter").hold(exclusive=True):
        run = threading.Thread(target=lambda: rows.extend(run_bench(options, on_start=started.append)))
        run.start()
        deadline = time.monotonic() + 240
        while len(started) < 3 and run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(started) == ["01_light_scale", "02_light_relu", "03_light_sigmoid"]
        while waiting(tmp_path) < 3 and run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert waiting(tmp_path) == 3, "the three lanes never waited for the admission together"
        released = time.monotonic()
    run.join(240)
    verdicts = {r.name: r.status.value for r in rows}       # one ReLU for all: right for 02 and 05 only
    assert verdicts == {"01_light_scale": "incorrect", "02_light_relu": "correct", "03_light_sigmoid": "incorrect",
                        "05_heavy_relu": "correct", "07_not_estimable": "incorrect"}, [(r.name, r.reason) for r in rows]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert {e["problem"] for e in events if e["heavy"]} == {"05_heavy_relu", "07_not_estimable"}
    span = [(e["problem"], e["heavy"], e["start"], e["end"]) for e in events]
    assert all(start >= released for _, _, start, _ in span), (released, span)   # they waited for the neighbour
    for one in (s for s in span if s[1]):
        assert not any(overlap(one, other) for other in span if other is not one), span
    light = [s for s in span if not s[1]]
    assert any(overlap(a, b) for a in light for b in light if a is not b), span
    assert len({e["pid"] for e in events}) == 3
    first = {"01_light_scale", "02_light_relu", "03_light_sigmoid"}      # `started` goes on with 05 and 07,
    assert all(e["waited_s"] > 0 for e in events if e["problem"] in first)  # which need not wait (flaky before)
