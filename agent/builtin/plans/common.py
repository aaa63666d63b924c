"""What every plan shares: the search configuration, the emitted kernel record, and the
rendering of a stage's pointwise body into kernel lines.

Kernel variables are canonical (`in0` for the first operand read, `v3` for the fourth
value computed), so identical stages (the layers of a stack) emit identical kernels
that the program writes once.
"""
from dataclasses import dataclass, field

import torch

from agent.builtin import ops
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage, Unsupported, classify


@dataclass(frozen=True)
class Config:
    """The launch parameters the search tunes; each plan reads the fields it needs."""

    block: int = 1024            # pointwise: elements per program
    warps: int = 4               # pointwise and reduce: warps per program
    row_warps: int = 4           # rows: warps per row program
    row_block: int = 0           # rows: 0 holds the whole row in registers, else the row is walked in such steps
    row_split: int = 0           # walked rows: 0 one program a row, else segments for about this many programs
    tile: int = 0                # matmul: index into MATMUL_TILES
    gemm_library: bool = False   # matmul: cuBLAS for the product, Triton for the chain after it
    gemm_b_copy: bool = True     # matmul, exact fp32 tl.dot: a K-fastest B copied N-fastest first
    gru_steps: bool = False      # GRU: a launch per step (for a CUDA graph) instead of a program walking the steps
    conv_library: bool = True    # conv: cuDNN for the convolution, Triton for the chain after it
    conv_direct: int = 2         # conv in Triton, a depthwise one: 2 tiled direct kernel, 1 flat one, 0 implicit GEMM
    reduce_block: int = 32       # reduce: chunk of the reduced dim per step (BLOCK_R)
    reduce_inner: int = 64       # reduce: outputs per program (BLOCK_I)
    gn_block: int = 2048         # group norm: elements per step
    cuda_graph: bool = False     # replay the whole forward as one CUDA graph (GPU only)


# (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages), ordered so neighbours are similar tiles
MATMUL_TILES = ((64, 64, 32, 8, 4, 3), (64, 128, 32, 8, 4, 3), (128, 64, 32, 8, 4, 3), (128, 128, 32, 8, 8, 3),
                (128, 128, 16, 8, 8, 4), (128, 256, 16, 8, 8, 3), (32, 64, 32, 8, 4, 2), (16, 64, 64, 8, 4, 2))


# kernel lines: flat output positions offs_m of a convolution -> (batch, od, oh, ow), ow fastest
CONV_POSITIONS = """    spatial = OD * OH * OW
    batch = offs_m // spatial
    pos = offs_m % spatial
    od = pos // (OH * OW)
    oh = (pos // OW) % OH
    ow = pos % OW"""


# kernel lines: program `pid` -> its (pid_m, pid_n) tile, GROUP_M tile rows at a time so
# neighbouring programs share operand tiles in L2 (the Triton matmul tutorial's ordering)
GROUPED_TILES = """    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (pid // num_pid_in_group) * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m"""


@dataclass(frozen=True)
class Emitted:
    """One stage as code: a kernel (plus helpers), its wrapper, and the forward's call."""

    kernel: str
    wrapper: str
    call: str                    # e.g. "relu = linear_relu(x, self.linear.weight, self.linear.bias)"
    helpers: frozenset = field(default_factory=frozenset)
    pre_call: str = ""           # a torch line the call needs first (the cuDNN convolution)


DTYPES = {torch.float32: "torch.float32", torch.float16: "torch.float16", torch.bfloat16: "torch.bfloat16",
          torch.int64: "torch.int64", torch.int32: "torch.int32", torch.bool: "torch.bool"}


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in DTYPES:
        raise Unsupported(f"dtype {dtype} is not handled by the built-in plans")
    return DTYPES[dtype]


def forward_expr(name: str, graph: OpGraph) -> str:
    """How ModelNew.forward names a value: an argument, a parameter of a layer, or a local."""
    node = graph.node(name)
    if node.op == "input":
        return node.attrs["arg"]
    if node.op == "param":
        return module_expr(node.attrs["path"])
    return name


def module_expr(path: str) -> str:
    """A submodule or parameter of the model by its dotted path, e.g. 'self.layers[0].bn'."""
    return "self" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in path.split("."))


def slug(stage: Stage) -> str:
    """A readable kernel name from the ops it computes, e.g. 'linear_gelu_mul'."""
    names = []
    for node in ([stage.anchor] if stage.anchor else []) + stage.body:
        if node.op not in names and node.op not in ("identity", "contiguous", "torch"):
            names.append(node.op)
    text = "_".join(names[:3]) + ("_etc" if len(names) > 3 else "")
    return text or stage.kind.value


class Body:
    """Renders a stage's pointwise ops as kernel lines over canonical variable names."""

    def __init__(self, stage: Stage, graph: OpGraph, anchor_var: str | None = None, extra: tuple[str, ...] = ()):
        """`anchor_var` names the anchor's result in the kernel (the template computes it);
        `extra` are operands the template reads besides those of the pointwise body."""
        self.stage, self.graph = stage, graph
        inside = stage.names
        refs = list(extra) + [r for node in stage.body for r in node.refs if r not in inside]
        self.inputs = list(dict.fromkeys(refs))
        self.var = {name: f"in{i}" for i, name in enumerate(self.inputs)}
        if anchor_var:
            self.var[stage.anchor.name] = anchor_var
        self.helpers: set[str] = set()
        self.count = 0

    def fresh(self, name: str) -> str:
        var = f"v{self.count}"
        self.count += 1
        self.var[name] = var
        return var

    def arg(self, value) -> str:
        if isinstance(value, Ref):
            return self.var[value.name]
        return ops.literal(value)

    def pointwise(self, node: OpNode) -> str:
        args = [self.arg(a) for a in node.args]
        if node.op in ops.HELPERS or (node.op == "gelu" and node.attrs.get("approximate") == "tanh"):
            self.helpers.add("_tanh")
        expr = ops.render(node.op, args, node.attrs)
        return f"{self.fresh(node.name)} = {expr}  # {node.op}"

    def kinds(self, target: tuple[int, ...], forced: dict[str, Operand] | None = None) -> dict[str, Operand]:
        forced = forced or {}
        return {name: forced.get(name) or classify(self.graph.node(name).shape, target) for name in self.inputs}


@dataclass(frozen=True)
class Epilogue:
    """The chain after a stage's anchor as kernel lines, and the pointers they read and write."""

    lines: list[str]             # operand loads, the pointwise ops, the stores
    params: str                  # the kernel's pointer parameters, one per line
    outs: list[str]              # the output pointers' names, in the order of stage.outputs


def epilogue(stage: Stage, graph: OpGraph, body: Body, index: dict[Operand, str], after: str,
             mask: str = "mask") -> Epilogue:
    """Each operand is loaded with the index its kind needs (`index[Operand.FULL]` is also
    where the outputs are stored); an operand kind `index` lacks raises Unsupported, naming
    what it comes `after`."""
    kinds = body.kinds(stage.shape)
    missing = [kinds[n] for n in body.inputs if kinds[n] not in index]
    if missing:
        raise Unsupported(f"{stage.anchor.name}: an epilogue operand read as {missing[0].value} after {after} "
                          f"(only {', '.join(k.value for k in index)})")
    lines = [f"{body.var[n]} = tl.load({body.var[n]}_ptr + {index[kinds[n]]}, mask={mask}, other=0.0)"
             f"{load_cast(graph.node(n))}" for n in body.inputs] + [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + {index[Operand.FULL]}, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask={mask})"
              for o, v in zip(outs, stage.outputs)]
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output\n" for o in outs)
    return Epilogue(lines, params, outs)


def conv_keywords(attrs: dict) -> list[str]:
    """A Triton convolution's parameters as keyword arguments of its call, so layers that differ
    only in them share one kernel and wrapper."""
    keys = ("stride", "padding", "dilation", "groups") + (("output_padding",) if "output_padding" in attrs else ())
    return [f"{k}={tuple(attrs[k]) if isinstance(attrs[k], (tuple, list)) else attrs[k]!r}" for k in keys]


def conv_epilogue(stage: Stage, graph: OpGraph, loads: dict[Operand, str], mask: str,
                  inside: str) -> tuple[Body, dict, list[str], list[str]]:
    """A Triton convolution's bias and chain on its accumulator `acc`: (body, kinds, outs, lines),
    each operand read with `loads[kind]` ({p}: its pointer), the outputs stored at `out_offs`
    under `mask`; an operand kind `loads` lacks raises Unsupported, naming the kernel (`inside`)."""
    bias = (list(stage.anchor.args) + [None, None])[2]
    bias = bias if isinstance(bias, Ref) else None
    body = Body(stage, graph, "acc", (bias.name,) if bias else ())
    kinds = body.kinds(stage.shape, {bias.name: Operand.CHANNEL} if bias else None)
    unsupported = [n for n in body.inputs if kinds[n] not in loads]
    if unsupported:
        raise Unsupported(f"{stage.anchor.name}: an epilogue operand read as {kinds[unsupported[0]].value} "
                          f"inside {inside}")
    lines = [f"{body.var[n]} = {loads[kinds[n]].format(p=body.var[n] + '_ptr')}{load_cast(graph.node(n))}"
             for n in body.inputs]
    if bias:
        lines.append(f"acc = acc + {body.var[bias.name]}  # bias")
    lines += [body.pointwise(node) for node in stage.body]
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines += [f"tl.store({o}_ptr + out_offs, {body.var[v]}.to({o}_ptr.dtype.element_ty), mask={mask})"
              for o, v in zip(outs, stage.outputs)]
    return body, kinds, outs, lines


def load_cast(node: OpNode) -> str:
    return ".to(tl.float32)" if node.dtype is not None and node.dtype.is_floating_point else ""


# The broadcast result of the wrapper's operands: torch.broadcast_shapes' rule in plain Python,
# since that function costs tens of microseconds a call, more than the launch it precedes.
BROADCAST_HELPER = '''
def _broadcast_shape(*shapes):
    if all(s == shapes[0] for s in shapes[1:]):
        return torch.Size(shapes[0])
    out = []
    for axis in range(-max(len(s) for s in shapes), 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return torch.Size(out)
'''
# a pointwise wrapper's launch sizes, worked out once for each set of operand shapes (the
# Python of a launch is its host cost: a launch-bound forward pays it on every call)
POINTWISE_SIZES_HELPER = '''
def _pointwise_sizes(shapes, rank, block):
    shape = _broadcast_shape(*shapes)
    assert len(shape) == rank, f"expected a rank-{rank} result, got {tuple(shape)}"
    n_cols = shape[-1] if len(shape) else 1   # a rank-0 result (after a kept `torch.dist`, say)
    n_channels, n_inner = (shape[1], shape.numel() // (shape[0] * shape[1])) if len(shape) >= 3 else (1, 1)
    return shape, shape.numel(), n_cols, n_inner, n_channels, (triton.cdiv(shape.numel(), block),)
'''
