"""Kernel provenance: which kernels a candidate's forwards launched, and whether its own ran.

The worker counts launches through Triton's `JITFunction.run` / `InterpretedFunction.run`
(compiled and interpreted alike), calls into extensions built by
`torch.utils.cpp_extension.load_inline`/`load`, and the replays of a `torch.cuda.CUDAGraph`
(each runs the launches made while it was captured) (`tools/sandbox/audit.py`); a kernel is the
candidate's own when the candidate's module defined it. Every forward — each trial, each
warm-up and timed call — must launch at least one own kernel, else the result gets the
flag `no_custom_kernel` (a flag, not a rejection: an honest PyTorch rewrite is still a
speedup a user may want; a ghost branch or a fallback taken on some inputs is caught too).

Not seen: CUDA kernels launched through ctypes (the static check rejects ctypes), and
graphs captured or replayed other than through `torch.cuda.CUDAGraph`.
"""
from dataclasses import dataclass, field

from tools.sandbox.replies import Launch


@dataclass
class Provenance:
    counts: dict[tuple[str, bool], int] = field(default_factory=dict)
    forwards: int = 0
    short: list[str] = field(default_factory=list)   # requests whose forwards outnumbered own launches

    def add(self, launches: tuple[Launch, ...], forwards: int, label: str) -> None:
        """The launches one request reported, for `forwards` calls of forward (0 for a load)."""
        own = 0
        for launch in launches:
            key = (launch.name, launch.own)
            self.counts[key] = self.counts.get(key, 0) + launch.count
            own += launch.count if launch.own else 0
        self.forwards += forwards
        if own < forwards:
            self.short.append(f"{label}: {own} launches of its own kernels for {forwards} forward call(s)")

    @property
    def no_custom_kernel(self) -> bool:
        return self.forwards > 0 and bool(self.short)

    def kernels(self) -> list[str]:
        ranked = sorted(self.counts.items(), key=lambda item: (not item[0][1], -item[1], item[0][0]))
        return [f"{name} x{count}" + ("" if own else " (not the candidate's)") for (name, own), count in ranked]
