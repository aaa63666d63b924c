"""The op graph the built-in policy works on: `OpGraph` of `OpNode`s whose tensor
arguments are `Ref`s, `CaptureError` for a forward that cannot be captured, and the
argument tables (`SIGNATURES`, `DEFAULTS`, `ALIASES`) by which both capture paths bind
a call's arguments: capture.py (torch.fx) and export.py (torch.export's aten graph).

    graph = OpGraph((OpNode("x", "input", (), {"arg": "x"}, (4, 8), torch.float32),
                     OpNode("relu", "relu", (Ref("x"),), {}, (4, 8), torch.float32)), output="relu")
    print(graph.describe())
"""
from dataclasses import dataclass, field

import torch

from agent.builtin.torch_call import TorchCall


@dataclass(frozen=True)
class Ref:
    """A tensor argument: the name of the node that produces it."""

    name: str


@dataclass(frozen=True)
class OpNode:
    name: str                       # a valid Python identifier (fx's node name)
    op: str                         # canonical op: "input", "param", "relu", "linear", ...
    args: tuple = ()                # Refs and scalar constants, in the op's argument order
    attrs: dict = field(default_factory=dict)   # bound scalar arguments (dim, eps, stride, ...)
    shape: tuple[int, ...] | None = None        # None for non-tensor values (sizes)
    dtype: torch.dtype | None = None
    kept: TorchCall | None = None               # the op as the reference wrote it, to keep it in PyTorch

    @property
    def refs(self) -> list[str]:
        return [a.name for a in self.args if isinstance(a, Ref)]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape or ():
            n *= s
        return n


@dataclass(frozen=True)
class OpGraph:
    nodes: tuple[OpNode, ...]
    output: str | None                          # the node the forward returns
    unsupported: tuple[str, ...] = ()           # one plain sentence per construct no plan handles
    tracer: str = "torch.fx"                    # or "torch.export": the fallback, sizes fixed at get_inputs' shapes

    def node(self, name: str) -> OpNode:
        return self.by_name[name]

    @property
    def by_name(self) -> dict[str, OpNode]:
        return {n.name: n for n in self.nodes}

    def users(self, name: str) -> list[OpNode]:
        return [n for n in self.nodes if name in n.refs]

    def describe(self) -> str:
        lines = []
        for n in self.nodes:
            args = ", ".join(a.name if isinstance(a, Ref) else repr(a) for a in n.args)
            attrs = ", ".join(f"{k}={v!r}" for k, v in n.attrs.items())
            attrs = f", {attrs}" if args and attrs else attrs
            shape = "x".join(map(str, n.shape)) if n.shape is not None else "scalar"
            dtype = str(n.dtype).replace("torch.", "") if n.dtype else ""
            lines.append(f"{n.name} = {n.op}({args}{attrs})  # {shape} {dtype}".rstrip())
        return "\n".join(lines)


class CaptureError(Exception):
    """The forward could not be traced at all; the message says why."""


# Argument names of the functions and methods we recognise (fx keeps positional args).
SIGNATURES = {
    "softmax": ("input", "dim"), "log_softmax": ("input", "dim"), "cumsum": ("input", "dim"), "cumprod": ("input", "dim"),
    "sum": ("input", "dim", "keepdim"), "logsumexp": ("input", "dim", "keepdim"), "mean": ("input", "dim", "keepdim"), "amax": ("input", "dim", "keepdim"),
    "amin": ("input", "dim", "keepdim"), "max": ("input", "dim", "keepdim"), "min": ("input", "dim", "keepdim"),
    "argmax": ("input", "dim", "keepdim"), "argmin": ("input", "dim", "keepdim"),
    "norm": ("input", "p", "dim", "keepdim"), "hardtanh": ("input", "min_val", "max_val"),
    "clamp": ("input", "min", "max"), "leaky_relu": ("input", "negative_slope"), "elu": ("input", "alpha"),
    "softplus": ("input", "beta", "threshold"), "gelu": ("input",), "pow": ("input", "exponent"),
    "matmul": ("input", "other"), "mm": ("input", "mat2"), "bmm": ("input", "mat2"), "diag": ("input", "diagonal"),
    "linear": ("input", "weight", "bias"), "transpose": ("input", "dim0", "dim1"), "t": ("input",),
    "unsqueeze": ("input", "dim"), "squeeze": ("input", "dim"), "flatten": ("input", "start_dim", "end_dim"),
    "smooth_l1_loss": ("input", "target", "size_average", "reduce", "reduction", "beta"),
    "mse_loss": ("input", "target", "size_average", "reduce", "reduction"),
    "l1_loss": ("input", "target", "size_average", "reduce", "reduction"),
    "layer_norm": ("input", "normalized_shape", "weight", "bias", "eps"),
    "group_norm": ("input", "num_groups", "weight", "bias", "eps"), "size": ("input", "dim"),
    "contiguous": ("input",), "clone": ("input",), "clamp_min": ("input", "min"), "clamp_max": ("input", "max"),
    "normalize": ("input", "p", "dim", "eps", "out"), "cosine_similarity": ("x1", "x2", "dim", "eps"),
}
VARARG_VIEWS = {"view", "reshape", "permute"}
DEFAULTS = {"keepdim": False, "min_val": -1.0, "max_val": 1.0, "negative_slope": 0.01, "alpha": 1.0, "beta": 1.0,
            "threshold": 20.0, "approximate": "none", "p": 2, "min": None, "max": None, "start_dim": 0,
            "end_dim": -1, "reduction": "mean", "eps": 1e-5, "diagonal": 0, "dim": None, "bias": None,
            "weight": None}
OP_DEFAULTS = {"normalize": {"p": 2.0, "dim": 1, "eps": 1e-12}, "cosine_similarity": {"dim": 1, "eps": 1e-8}}
# ^ where an op's default differs from DEFAULTS' (F.normalize's dim is 1, its eps 1e-12)
ALIASES = {"truediv": "div", "floordiv": "floor_divide", "rsub": "rsub", "iadd": "add", "imul": "mul",
           "isub": "sub", "itruediv": "div", "divide": "div", "multiply": "mul", "subtract": "sub",
           "clip": "clamp", "T": "t", "detach": "identity", "silu_": "silu", "relu_": "relu", "getitem": "getitem"}
