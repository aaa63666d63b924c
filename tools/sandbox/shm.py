"""Shared-memory arenas: how bulk tensors cross between the trusted side and a worker.

The trusted side creates an arena (a file in /dev/shm) per request, writes the inputs
into it and reserves slots shaped like the reference outputs; the worker maps the same
file, reads its inputs and copies its outputs (and its inputs after the call) into the
slots. Messages carry only references `{"offset", "shape", "dtype"}`, so a 256 MB input
costs a memcpy instead of a serialise-pipe-deserialise round trip, and nothing in the
arena is ever unpickled. The worker can scribble on the arena at any time: the trusted
side keeps its own copies of everything it compares against.

Imports only the standard library and torch: it runs inside the sandbox too.
"""
import os
import tempfile

import torch

ALIGN = 64
SHM_DIR = "/dev/shm"
DTYPES = {str(d): d for d in (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                              torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64)}


class ArenaError(ValueError):
    """A reference that does not fit the arena or names an unknown dtype."""


def nbytes_of(shape, dtype: torch.dtype) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * torch.empty((), dtype=dtype).element_size()


class Arena:
    def __init__(self, path: str, nbytes: int):
        self.path, self.nbytes = path, nbytes
        self.buffer = torch.from_file(path, shared=True, size=max(nbytes, 1), dtype=torch.uint8)
        self.used = 0

    @classmethod
    def create(cls, nbytes: int, folder: str | None = None) -> "Arena":
        folder = folder or (SHM_DIR if os.path.isdir(SHM_DIR) else tempfile.gettempdir())
        handle, path = tempfile.mkstemp(prefix="kernelpilot-arena-", dir=folder)
        os.ftruncate(handle, max(nbytes, 1))
        os.close(handle)
        return cls(path, nbytes)

    def describe(self) -> dict:
        return {"path": self.path, "nbytes": self.nbytes}

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
        """Trusted side: remove the file (the mapping lives until both sides drop it)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def arena_bytes(shapes_and_dtypes) -> int:
    return sum(-(-nbytes_of(shape, dtype) // ALIGN) * ALIGN for shape, dtype in shapes_and_dtypes) + ALIGN
