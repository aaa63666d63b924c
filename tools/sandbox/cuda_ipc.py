"""Device memory shared between processes through the CUDA driver's IPC calls, without
PyTorch's reference counting.

PyTorch's own CUDA tensor sharing keeps a shared block alive on the producer's side
until every consumer has dropped it, and a consumer that is killed never drops it: on a
batch run every sandbox worker is killed or exits without tearing down, so each arena
the trusted side replaced stayed allocated (65-74 GiB held after a dozen KernelBench
level-1 problems, and the next ones ran out of memory). Here the trusted side allocates
with `cuMemAlloc` and frees with `cuMemFree` when it chooses; the driver unmaps the
memory from a consumer when that process ends, however it ends.

    block = DeviceBlock.allocate(nbytes, device)       # trusted side
    handle = block.handle                              # 64 bytes, sent to the worker
    view = open_block(handle, nbytes, device)          # worker side: a uint8 tensor
    block.free()                                       # trusted side, workers gone

Imports only the standard library and torch (it runs inside the sandbox too). The driver
library is `libcuda.so.1`, present wherever a CUDA GPU is.
"""
import ctypes

import torch

HANDLE_BYTES = 64
LAZY_ENABLE_PEER_ACCESS = 1     # CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS, the one flag the call takes


class IpcError(RuntimeError):
    """A driver call failed; the message names the call and the driver's error."""


class _Handle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_char * HANDLE_BYTES)]


_driver = None


def _lib() -> ctypes.CDLL:
    global _driver
    if _driver is None:
        try:
            _driver = ctypes.CDLL("libcuda.so.1")
        except OSError as error:
            raise IpcError(f"the CUDA driver library libcuda.so.1 cannot be loaded: {error}") from None
        _driver.cuIpcOpenMemHandle_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), _Handle, ctypes.c_uint]
    return _driver


def _check(code: int, call: str) -> None:
    if code != 0:
        name = ctypes.c_char_p()
        _lib().cuGetErrorName(code, ctypes.byref(name))
        raise IpcError(f"{call} failed: {name.value.decode() if name.value else code}")


def _current(device: torch.device) -> None:
    """Make the device's primary context current on this thread (torch's runtime calls do)."""
    torch.cuda.set_device(device)
    torch.zeros(1, device=device)


class _Interface:
    """A raw device pointer seen by `torch.as_tensor` (the CUDA array interface, v3)."""

    def __init__(self, pointer: int, nbytes: int):
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (pointer, False),
                                         "version": 3, "strides": None}


def as_bytes(pointer: int, nbytes: int, device: torch.device) -> torch.Tensor:
    """A uint8 tensor over `nbytes` at `pointer`; it does not own the memory."""
    return torch.as_tensor(_Interface(pointer, nbytes), device=device)


class DeviceBlock:
    """`nbytes` of device memory owned by this process, outside PyTorch's allocator."""

    def __init__(self, pointer: int, nbytes: int, device: torch.device):
        self.pointer, self.nbytes, self.device = pointer, nbytes, device

    @classmethod
    def allocate(cls, nbytes: int, device: torch.device) -> "DeviceBlock":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        _current(device)
        pointer = ctypes.c_uint64()
        _check(_lib().cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(nbytes)), f"cuMemAlloc of {nbytes} bytes")
        return cls(pointer.value, nbytes, device)

    @property
    def handle(self) -> bytes:
        handle = _Handle()
        _check(_lib().cuIpcGetMemHandle(ctypes.byref(handle), ctypes.c_uint64(self.pointer)), "cuIpcGetMemHandle")
        return bytes(handle)        # all 64 bytes (`.reserved` would stop at the first zero)

    def tensor(self) -> torch.Tensor:
        return as_bytes(self.pointer, self.nbytes, self.device)

    def free(self) -> None:
        """Give the memory back; the caller has synchronised, and every worker that opened
        it has ended (a live one would read freed memory)."""
        if self.pointer:
            _current(self.device)
            _check(_lib().cuMemFree_v2(ctypes.c_uint64(self.pointer)), "cuMemFree")
            self.pointer = 0


def open_block(handle: bytes, nbytes: int, device: torch.device) -> torch.Tensor:
    """Worker side: map another process's block; it stays mapped until this process ends."""
    if len(handle) != HANDLE_BYTES:
        raise IpcError(f"an IPC handle has {HANDLE_BYTES} bytes, got {len(handle)}")
    _current(device)
    pointer = ctypes.c_uint64()
    opened = _lib().cuIpcOpenMemHandle_v2(ctypes.byref(pointer), _Handle.from_buffer_copy(handle),
                                          LAZY_ENABLE_PEER_ACCESS)
    _check(opened, "cuIpcOpenMemHandle")
    return as_bytes(pointer.value, nbytes, device)
