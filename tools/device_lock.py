"""One GPU, one measurement at a time, across every kernelpilot process on the machine.

Kernel timings are only believable when nothing else runs on the device meanwhile. Within
a process the evaluator runs one evaluation at a time; across processes (the grader's or
bench's lane processes sharing a GPU, a user's `eval` beside a running `bench`) this lock
does it: an advisory `flock` on a file named after the GPU's UUID (CUDA_VISIBLE_DEVICES
renumbers devices, the UUID does not), in the machine's temporary folder, which sandboxed
candidates cannot reach. The evaluator holds it while the candidate's correctness trials
and timed calls run on the device and while a baseline is timed; loading a candidate
(importing it, building its CUDA C++) happens outside, so several processes compile while
one measures. The kernel drops an flock when its process dies, even by SIGKILL.

    lock = DeviceLock.of(device)        # a no-op in the Triton interpreter
    with lock:
        ...                             # trials and timing
    lock.waited_s                       # how long the last acquisition waited
    lock.held_s                         # how long it has been held, all acquisitions together
    lock.held                           # held now
"""
import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path

import torch

from tools.device import DeviceInfo
from tools.records import Mode

LOCK_PREFIX = "kernelpilot-gpu-"


def gpu_identity(index: int) -> str:
    """The device's UUID (stable across processes and CUDA_VISIBLE_DEVICES); its PCI bus id or
    name and index where this torch cannot tell it."""
    props = torch.cuda.get_device_properties(index)
    for attribute in ("uuid", "pci_bus_id"):
        value = getattr(props, attribute, None)
        if value:
            return str(value)
    return f"{props.name}-{index}"


def lock_path(identity: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity)
    return Path(tempfile.gettempdir()) / f"{LOCK_PREFIX}{safe}.lock"


class DeviceLock:
    """Re-entrant within a thread (a baseline timed inside an evaluation takes it again)."""

    def __init__(self, path: Path | None):
        self.path, self.waited_s, self.held_s = path, 0.0, 0.0
        self._since = 0.0
        self._fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    @staticmethod
    def of(device: DeviceInfo) -> "DeviceLock":
        if device.mode is not Mode.GPU or device.cuda_index is None:
            return DeviceLock(None)
        return DeviceLock(lock_path(gpu_identity(device.cuda_index)))

    @property
    def held(self) -> bool:
        """Held now (by the thread that holds it: one evaluation at a time uses a lock)."""
        return self._depth > 0

    def __enter__(self) -> "DeviceLock":
        self._thread_lock.acquire()
        if self.path is None or self._depth:
            self._depth += 1
            return self
        start = time.monotonic()
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)   # flock needs no write access
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            self._thread_lock.release()
            raise
        self._fd, self._depth, self.waited_s, self._since = fd, 1, time.monotonic() - start, time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self.held_s += time.monotonic() - self._since
        self._thread_lock.release()
