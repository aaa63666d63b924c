"""The machine-wide device lock (tools/device_lock.py): one measurement at a time on a GPU,
across processes; shared holders beside one another but never beside an exclusive one, and a
waiting exclusive holder not starved by later shared ones; released when its holder dies, even
by SIGKILL; re-entrant in a thread, never upgraded from shared to exclusive; a no-op in the
Triton interpreter. Real processes and a real flock, on a lock file of the test's."""
import multiprocessing
import os
import signal
import time

import pytest

from tools.device import DeviceInfo
from tools.device_lock import DeviceLock, lock_path
from tools.records import Mode


def hold(path, seconds: float, ready, exclusive: bool = True, taken=None) -> None:
    lock = DeviceLock(path)
    with (lock if exclusive else lock.shared):
        if taken is not None:
            taken.value = time.monotonic()      # CLOCK_MONOTONIC: one clock for every process of the machine
        ready.set()
        time.sleep(seconds)


def holder(path, seconds: float, exclusive: bool = True, wait: bool = True, method: str = "spawn"):
    context = multiprocessing.get_context(method)
    ready, taken = context.Event(), context.Value("d", 0.0)
    process = context.Process(target=hold, args=(path, seconds, ready, exclusive, taken))
    process.start()
    if wait:
        assert ready.wait(60), "the holder never took the lock"
    process.taken, process.ready = taken, ready     # kept alive until the child has unpickled them
    return process


def test_a_second_process_waits_for_the_first(tmp_path):
    path = tmp_path / "gpu.lock"
    first = holder(path, 1.5)
    lock = DeviceLock(path)
    with lock:
        assert not first.is_alive() or first.join(0) is None
    first.join(10)
    assert lock.waited_s > 0.8, lock.waited_s


def test_a_holder_killed_by_sigkill_releases_it(tmp_path):
    path = tmp_path / "gpu.lock"
    first = holder(path, 600)
    os.kill(first.pid, signal.SIGKILL)
    lock = DeviceLock(path)
    started = time.monotonic()
    with lock:
        pass
    assert time.monotonic() - started < 10
    first.join(10)


def test_reentrant_in_a_thread_and_released_after_the_outermost(tmp_path):
    path = tmp_path / "gpu.lock"
    lock = DeviceLock(path)
    with lock:
        with lock:
            pass
        assert lock._fd is not None             # still held by the outer block
    assert lock._fd is None
    assert 0.0 < lock.held_s < 5.0          # held once, from the outer block's entry to its exit
    other = DeviceLock(path)
    with other:
        assert other.waited_s < 1.0


def test_no_lock_in_the_interpreter_and_one_file_per_gpu(tmp_path):
    cpu = DeviceLock.of(DeviceInfo(Mode.CPU_INTERPRETER, "cpu", None))
    assert cpu.path is None
    with cpu:
        with cpu:
            pass
    assert lock_path("GPU-1234/x") != lock_path("GPU-5678") and "/" not in lock_path("GPU-1234/x").name


def test_shared_holders_overlap_and_an_exclusive_one_waits_for_them(tmp_path):
    path = tmp_path / "gpu.lock"
    first = holder(path, 2.0, exclusive=False)
    second = DeviceLock(path)
    with second.shared:
        assert second.waited_s < 1.0            # beside the first shared holder
    timing = DeviceLock(path)
    with timing:
        assert timing.waited_s > 0.8, timing.waited_s
    first.join(10)
    assert timing.held_s > 0 and second.held_s == 0.0      # held_s counts exclusive holds only


def test_a_waiting_exclusive_holder_keeps_later_shared_ones_out(tmp_path):
    path = tmp_path / "gpu.lock"
    reader = holder(path, 2.0, exclusive=False, method="fork")      # forked: in line within milliseconds
    writer = holder(path, 1.0, wait=False, method="fork")           # waits for the reader, holding the turnstile
    time.sleep(0.8)
    late = holder(path, 0.0, exclusive=False, wait=False, method="fork")
    for process in (reader, writer, late):
        process.join(30)
    assert 0 < writer.taken.value < late.taken.value, (writer.taken.value, late.taken.value)
    assert late.taken.value - writer.taken.value > 0.8       # the late reader waited out the writer's hold


def test_a_thread_holding_it_shared_cannot_take_it_exclusive_and_lets_go_cleanly(tmp_path):
    lock = DeviceLock(tmp_path / "gpu.lock")
    with lock.shared:
        with lock.shared:
            pass
        with pytest.raises(RuntimeError, match="held shared by this thread"):
            lock.__enter__()
        assert lock.held
    assert not lock.held and lock._fd is None
    with lock:
        with lock.shared:                       # inside an exclusive hold, shared is the same hold
            assert lock._exclusive
    cpu = DeviceLock(None)                      # the interpreter's no-op lock enforces the same rule
    with cpu.shared, pytest.raises(RuntimeError):
        cpu.__enter__()
