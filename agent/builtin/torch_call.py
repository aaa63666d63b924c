"""An fx node rendered back to the torch expression the reference wrote.

The built-in plans have no Triton kernel for some ops (a transposed convolution, a
pool returning indices, batch norm in training mode, a softmax across channels). Such an op is
kept in PyTorch exactly as the reference calls it, and what follows it is fused into a
Triton epilogue; the analysis names every op kept this way. The expression is a
template over the node's tensor arguments, so the program can name them the way
`ModelNew.forward` does.

A call torch.export left as an aten overload renders as `torch.ops.aten.<op>.<overload>(...)`.

    call = torch_call(node)     # TorchCall("self.pool({0})", ("conv",)), or None
    call.render(["x"])          # "self.pool(x)"
"""
import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F

OPERATORS = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
             operator.floordiv: "//", operator.mod: "%"}
LITERALS = (bool, int, float, str, type(None), slice, type(Ellipsis))


@dataclass(frozen=True)
class TorchCall:
    template: str               # a Python expression with {0}, {1}, ... for the tensor arguments
    refs: tuple[str, ...]       # the node names of those arguments, in placeholder order

    def render(self, names: list[str]) -> str:
        return self.template.format(*names)

    def then(self, suffix: str) -> "TorchCall":
        """The same call followed by an indexing or attribute suffix (`[0]`, `.values`)."""
        return TorchCall(self.template + suffix.replace("{", "{{").replace("}", "}}"), self.refs)


class _NotRenderable(Exception):
    pass


def torch_call(node: fx.Node) -> TorchCall | None:
    """The node as a torch expression, or None when an argument has no source form."""
    refs: list[str] = []
    try:
        args = [_arg(a, refs) for a in node.args]
        kwargs = [f"{k}={_arg(v, refs)}" for k, v in node.kwargs.items()]
        template = _callee(node, args, kwargs)
    except _NotRenderable:
        return None
    return None if template is None else TorchCall(template, tuple(refs))


def _callee(node: fx.Node, args: list[str], kwargs: list[str]) -> str | None:
    if node.op == "call_module":
        path = "self" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in node.target.split("."))
        return f"{path}({', '.join(args + kwargs)})"
    if node.op == "call_method":
        return f"{args[0]}.{node.target}({', '.join(args[1:] + kwargs)})"
    if node.op != "call_function":
        return None
    fn = node.target
    if fn is operator.getitem:
        return f"{args[0]}[{args[1]}]"
    if fn is getattr:
        return f"{args[0]}.{node.args[1]}"
    if fn in OPERATORS and len(args) == 2 and not kwargs:
        return f"({args[0]} {OPERATORS[fn]} {args[1]})"
    if isinstance(fn, torch._ops.OpOverload):     # an aten call from torch.export with no torch-level binding
        return f"torch.ops.{fn.namespace}.{fn._opname}.{fn._overloadname}({', '.join(args + kwargs)})"
    name = getattr(fn, "__name__", "")
    for prefix, namespace in (("torch", torch), ("F", F), ("torch._C._nn", torch._C._nn)):
        if name and getattr(namespace, name, None) is fn:
            return f"{prefix}.{name}({', '.join(args + kwargs)})"
    return None


def _arg(value, refs: list[str]) -> str:
    if isinstance(value, fx.Node):
        refs.append(value.name)
        return "{" + str(len(refs) - 1) + "}"
    if isinstance(value, (tuple, list)):
        items = [_arg(v, refs) for v in value]
        if isinstance(value, list):
            return f"[{', '.join(items)}]"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, (torch.dtype, torch.memory_format, torch.layout)):
        return str(value)                       # "torch.float32", "torch.contiguous_format"
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, LITERALS):
        return repr(value).replace("{", "{{").replace("}", "}}")
    raise _NotRenderable(type(value).__name__)     # a torch.device among them: written back it would pin the device
