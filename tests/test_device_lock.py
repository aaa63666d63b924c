"""The machine-wide device lock (tools/device_lock.py): one measurement at a time on a GPU,
across processes; released when its holder dies, even by SIGKILL; re-entrant in a thread; a
no-op in the Triton interpreter. Real processes and a real flock, on a lock file of the test's."""
import multiprocessing
import os
import signal
import time

from tools.device import DeviceInfo
from tools.device_lock import DeviceLock, lock_path
from tools.records import Mode


def hold(path, seconds: float, ready) -> None:
    with DeviceLock(path):
        ready.set()
        time.sleep(seconds)


def holder(path, seconds: float):
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    process = context.Process(target=hold, args=(path, seconds, ready))
    process.start()
    assert ready.wait(60), "the holder never took the lock"
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
