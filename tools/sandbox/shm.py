"""Exchange arenas: how bulk tensors cross between the trusted side and a worker.

An arena is one flat byte buffer both processes can see. The trusted side writes the
inputs into it and reserves slots shaped like the reference outputs; the worker runs
the candidate on views of the inputs (so an input the candidate modifies is modified
where the trusted side looks) and copies its outputs into the slots. Messages carry
only references `{"offset", "shape", "dtype"}`; nothing in an arena is unpickled.

- On a GPU the buffer is device memory of the trusted process, opened by the worker
  through CUDA IPC (`cuda_ipc`): no byte crosses the PCIe bus. The trusted side reuses
  it; one it outgrows is freed once the workers that may have opened it are closed.
- On the CPU it is a file in /dev/shm mapped by both, made per request.

The worker can scribble on an arena at any time: the trusted side compares against its
own private copies. Imports only the standard library and torch (it runs inside the
sandbox too).
"""
import os
import tempfile

import torch

from tools.sandbox.cuda_ipc import DeviceBlock, open_block

ALIGN = 256
SHM_DIR = "/dev/shm"
ARENA_PREFIX = "kernelpilot-arena-"   # + the trusted pid: a sweep after a crash knows whose it was
DTYPES = {str(d): d for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                              torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64)}


class ArenaError(ValueError):
    """A reference that does not fit the arena, or an arena that cannot be opened."""


def nbytes_of(shape, dtype: torch.dtype) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * torch.empty((), dtype=dtype).element_size()


def arena_bytes(shapes_and_dtypes) -> int:
    return sum(-(-nbytes_of(shape, dtype) // ALIGN) * ALIGN for shape, dtype in shapes_and_dtypes) + ALIGN


class Arena:
    """A byte buffer carved into tensor views by a bump allocator."""

    def __init__(self, buffer: torch.Tensor, description: dict, block: DeviceBlock | None = None):
        self.buffer, self.description, self.used = buffer, description, 0
        self.block = block      # the device memory behind a trusted-side CUDA arena

    @property
    def nbytes(self) -> int:
        return self.buffer.numel()

    @classmethod
    def host(cls, nbytes: int) -> "Arena":
        folder = SHM_DIR if os.path.isdir(SHM_DIR) else tempfile.gettempdir()
        handle, path = tempfile.mkstemp(prefix=f"{ARENA_PREFIX}{os.getpid()}-", dir=folder)
        try:
            # Real pages now: a sparse file on a full tmpfs would kill a writer with SIGBUS later.
            os.posix_fallocate(handle, 0, max(nbytes, 1))
            buffer = torch.from_file(path, shared=True, size=max(nbytes, 1), dtype=torch.uint8)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(handle)
        return cls(buffer, {"kind": "file", "path": path, "nbytes": max(nbytes, 1)})

    @classmethod
    def cuda(cls, nbytes: int, device: torch.device) -> "Arena":
        block = DeviceBlock.allocate(max(nbytes, 1), device)
        description = {"kind": "cuda", "handle": block.handle.hex(), "nbytes": block.nbytes,
                       "device": block.device.index}
        return cls(block.tensor(), description, block)

    def describe(self) -> dict:
        return self.description

    def reset(self) -> "Arena":
        self.used = 0
        return self

    def alloc(self, shape, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
        size = nbytes_of(shape, dtype)
        offset = -(-self.used // ALIGN) * ALIGN
        if offset + size > self.nbytes:
            raise ArenaError(f"arena of {self.nbytes} bytes cannot hold {size} more at {offset}")
        self.used = offset + size
        ref = {"offset": offset, "shape": [int(d) for d in shape], "dtype": str(dtype)}
        return self.view(ref), ref

    def put(self, tensor: torch.Tensor) -> dict:
        view, ref = self.alloc(tensor.shape, tensor.dtype)
        view.copy_(tensor)
        return ref

    def slots(self, like: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[dict]]:
        """Empty slots shaped like `like`: (views, references)."""
        pairs = [self.alloc(x.shape, x.dtype) for x in like]
        return [view for view, _ in pairs], [ref for _, ref in pairs]

    def view(self, ref: dict) -> torch.Tensor:
        dtype = DTYPES.get(ref["dtype"])
        if dtype is None:
            raise ArenaError(f"unknown dtype {ref['dtype']!r}")
        offset, size = int(ref["offset"]), nbytes_of(ref["shape"], dtype)
        if offset < 0 or offset + size > self.nbytes:
            raise ArenaError(f"reference [{offset}, {offset + size}) outside the arena of {self.nbytes} bytes")
        return self.buffer[offset:offset + size].view(dtype).view(ref["shape"])

    def close(self) -> None:
        """Remove a host arena's file (the mapping lives until both sides drop it)."""
        if self.description["kind"] == "file":
            try:
                os.unlink(self.description["path"])
            except FileNotFoundError:
                pass


_opened: dict[str, Arena] = {}


def open_arena(description: dict) -> Arena:
    """Worker side: map the arena the trusted side described (CUDA ones once per process)."""
    if description["kind"] == "file":
        buffer = torch.from_file(description["path"], shared=True, size=description["nbytes"], dtype=torch.uint8)
        return Arena(buffer, description)
    if description["kind"] != "cuda":
        raise ArenaError(f"unknown arena kind {description['kind']!r}")
    key = description["handle"]
    if key not in _opened:
        device = torch.device("cuda", description["device"])
        _opened[key] = Arena(open_block(bytes.fromhex(key), description["nbytes"], device), description)
    return _opened[key]


GIB = 1 << 30


def arena_size(nbytes: int) -> int:
    """Powers of two up to 1 GiB, then whole GiB: few growth steps, and L1-45's 16.1 GiB
    request takes 17 GiB, not 32, beside the inputs and outputs the trusted side holds."""
    if nbytes <= GIB:
        return 1 << max(nbytes - 1, 1).bit_length()
    return -(-nbytes // GIB) * GIB


class Exchange:
    """The trusted side's source of arenas: one reused CUDA arena (grown when a request
    needs more), or a fresh host arena per request.

    An outgrown CUDA arena is retired, not freed: the worker of the evaluation under way
    may still have it mapped. `collect` frees the retired ones; call it once that worker is
    closed."""

    def __init__(self, device: torch.device):
        self.device, self._cuda, self._retired = device, None, []

    def acquire(self, nbytes: int) -> Arena:
        if self.device.type != "cuda":
            return Arena.host(nbytes)
        if self._cuda is None or self._cuda.nbytes < nbytes:
            if self._cuda is not None:
                self._retired.append(self._cuda)
            torch.cuda.empty_cache()        # what this process caches but does not use can hold the new one
            self._cuda = Arena.cuda(arena_size(nbytes), self.device)
        return self._cuda.reset()

    def ready(self, arena: Arena) -> None:
        """Writes into a CUDA arena must land before another process reads it. Memory this
        process's allocator caches but no longer uses (reference activations, drawn input
        sets) goes back to the device first: the worker is another process and cannot use
        that cache (on KernelBench's sizes it grew to 75 GiB, and workers ran out)."""
        if arena.description["kind"] == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def release(self, arena: Arena) -> None:
        if arena.description["kind"] == "cuda":
            torch.cuda.synchronize(self.device)
        else:
            arena.close()

    def collect(self) -> None:
        """Free the retired CUDA arenas; every worker that may have opened one is closed."""
        if self._retired:
            torch.cuda.synchronize(self.device)
        while self._retired:
            self._retired.pop().block.free()

    def free(self) -> None:
        """Free every CUDA arena, the current one too (every worker is closed): a lane sharing its
        GPU gives its memory back between evaluations (tools/gpu_share.py)."""
        if self._cuda is not None:
            self._retired.append(self._cuda)
            self._cuda = None
        self.collect()

    @property
    def held_bytes(self) -> int:
        """Device memory in arenas, the current one and the retired ones (outside torch's
        allocator, so `torch.cuda.memory_reserved` does not count it)."""
        return sum(a.nbytes for a in self._retired + ([self._cuda] if self._cuda else []))
