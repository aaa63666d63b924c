"""Capture a problem's `Model.forward` as a small op graph with shapes and dtypes.

`torch.fx.symbolic_trace` records the forward; `ShapeProp` runs it on the meta device
(no memory, no compute) with inputs from the problem's own `get_inputs`, so every node
gets its shape and dtype at the problem's size. A forward fx cannot trace, or leaves
constructs unsupported (sizes used as Python numbers), is exported with torch.export
instead (export.py), its sizes fixed at get_inputs' shapes; `OpGraph.tracer` says which
captured it. Each node becomes an `OpNode` (ir.py) with a canonical op name ("linear",
"softmax", "add", ...), its tensor arguments as `Ref`s, its scalar arguments bound by
name, and the torch expression the reference wrote (`OpNode.kept`), which is how a plan
keeps an op in PyTorch. An op with no canonical name becomes op "torch" (kept as
written); constructs that cannot even be written back are listed in
`OpGraph.unsupported`, never guessed.

    graph = capture(load_problem("benchmarks/problems/07_rmsnorm.py", size="small"))
    print(graph.describe())
"""
import operator
from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.passes.shape_prop import ShapeProp

from agent.builtin.capture_losses import cross_entropy, triplet_margin_loss
from agent.builtin.export import exported_module
from agent.builtin.fx_args import meta, refs
from agent.builtin.ir import (ALIASES, DEFAULTS, OP_DEFAULTS, SIGNATURES, VARARG_VIEWS, CaptureError, OpGraph, OpNode,
                              Ref)
from agent.builtin.torch_call import torch_call
from tools.problems import Problem


def capture(problem: Problem) -> OpGraph:
    """The problem's forward as an OpGraph, shapes from `get_inputs` at the problem's size:
    torch.fx's, unless it fails or leaves constructs unsupported that torch.export's has fewer of."""
    with torch.device("meta"):
        torch.manual_seed(0)
        inputs = problem.draw_inputs()
    model = _meta_model(problem)
    try:
        graph = _fx_graph(model, inputs)
    except StateError:      # torch.export would lift the attribute as a constant: the same wrong forward
        raise
    except CaptureError as fx_error:
        try:
            return _export_graph(model, inputs)
        except CaptureError as export_error:
            raise CaptureError(f"{fx_error}; {export_error}") from None
    if not graph.unsupported:
        return graph
    try:
        exported = _export_graph(model, inputs)
    except CaptureError:    # fx's graph stands, its unsupported entries say why no plan takes it
        return graph
    return exported if len(exported.unsupported) < len(graph.unsupported) else graph


def _meta_model(problem: Problem) -> nn.Module:
    """The problem's Model with its parameters on the meta device: built there, or, for an
    __init__ that reads a value (`Tensor.item()` on a `linspace`), built on the CPU and moved."""
    try:
        with torch.device("meta"):
            return problem.module.Model(*problem.init_inputs())
    except Exception:   # any failure on meta is retried on the CPU, whose error is the one said
        pass
    try:
        return problem.module.Model(*problem.init_inputs()).to("meta")
    except Exception as error:  # the problem's own __init__ failing is data for the analysis, not a crash
        raise CaptureError(f"building Model failed: {type(error).__name__}: {error}") from None


def _fx_graph(model: nn.Module, inputs: list[torch.Tensor]) -> OpGraph:
    try:
        traced = _traced(model)
        ShapeProp(traced).propagate(*inputs)
    except CaptureError:
        raise
    except Exception as error:  # a trace failure is data for the analysis, not a crash
        raise CaptureError(f"torch.fx could not trace Model.forward: {type(error).__name__}: {error}") from None
    return convert(traced)


class StateError(CaptureError):
    """forward keeps state in a plain tensor attribute in a way no candidate may follow."""


def _traced(model: nn.Module) -> fx.GraphModule:
    """fx.symbolic_trace of a forward that may reassign a plain tensor attribute
    (`self.hidden = torch.tanh(...)`, which holds a Proxy after the trace; it is put back
    before the GraphModule copies what its graph reads). The candidate may not carry values
    from one call to the next (the static check rejects it: results cached across calls), so
    such an attribute must be overwritten in place (`self.hidden.copy_(h0)`) before forward
    reads it, as level 3's vanilla RNN does; otherwise the output depends on the previous
    call's and no plan is written (StateError)."""
    tensors = [(path, m, k, v) for path, m in model.named_modules() for k, v in vars(m).items()
               if isinstance(v, torch.Tensor)]
    tracer = fx.Tracer()
    graph = tracer.trace(model)
    for path, module, key, value in tensors:
        now, name = vars(module).get(key), f"{path}.{key}" if path else key
        setattr(module, key, value)
        if now is value:
            continue
        if not isinstance(now, fx.Proxy):
            raise StateError(f"forward assigns self.{name} a tensor no traced op computes (state fx cannot follow)")
        reads = [user for node in graph.nodes if node.op == "get_attr" and node.target == name for user in node.users]
        first = min(reads, key=list(graph.nodes).index, default=None)
        if not (first is not None and first.op == "call_method" and first.target == "copy_"
                and first.args[0].op == "get_attr" and first.args[0].target == name):
            raise StateError(f"forward reads self.{name} and reassigns it: its output depends on the previous "
                             "call's (state a candidate may not keep)")
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def _export_graph(model: nn.Module, inputs: list[torch.Tensor]) -> OpGraph:
    """torch.export's graph with symbolic sizes (a size the forward reads stays read, so the
    kernel holds at other sizes), unless the graph with fixed sizes leaves fewer ops unsupported."""
    fixed = _exported(model, inputs, dynamic=False)
    try:
        symbolic = _exported(model, inputs, dynamic=True)
    except CaptureError:    # export could not keep the sizes symbolic: they stay fixed
        return fixed
    return symbolic if len(symbolic.unsupported) <= len(fixed.unsupported) else fixed


def _exported(model: nn.Module, inputs: list[torch.Tensor], dynamic: bool) -> OpGraph:
    module = exported_module(model, inputs, dynamic)
    try:
        ShapeProp(module).propagate(*inputs)
    except Exception as error:  # as for fx: data for the analysis
        raise CaptureError(f"torch.export's graph did not run on meta tensors: {type(error).__name__}: {error}") \
            from None
    return replace(convert(module), tracer="torch.export")


def convert(traced: fx.GraphModule) -> OpGraph:
    _inline_constants(traced)
    nodes, unsupported, output = [], [], None
    modules = dict(traced.named_modules())
    pairs: dict[str, OpNode] = {}       # max/min over a dim: (values, indices), resolved at the getitem
    for node in traced.graph.nodes:
        if _is_pair(node):
            pair = _bind(node, node.target.__name__ if node.op == "call_function" else node.target, None, None)
            pairs[node.name] = replace(pair, kept=torch_call(node))
            continue
        if node.op == "call_module" and isinstance(modules[node.target], nn.GRU):
            pairs[node.name] = _gru(node, modules[node.target])
            continue
        if node.op == "call_function" and node.args and getattr(node.args[0], "name", None) in pairs:
            if node.users:      # an unpacked value nothing reads (`output, h_n = self.gru(x)`) is not computed
                nodes.append(_pick(node, pairs[node.args[0].name]))
            continue
        if node.op == "output":
            out = node.args[0]
            if isinstance(out, fx.Node):
                output = out.name
            else:
                unsupported.append(f"the forward returns {type(out).__name__}, not a single tensor")
            continue
        made, kept = _convert_node(node, modules, traced), torch_call(node)
        if kept is None:
            made = _fixed_device(node) or _python_number(node) or made
        if isinstance(made, str) and kept is not None:
            made = [OpNode(node.name, "torch", tuple(Ref(r) for r in kept.refs), {}, *meta(node))]
        if isinstance(made, str):
            unsupported.append(made)
            nodes.append(OpNode(node.name, "unsupported", refs(node.args), {}, *meta(node)))
        else:
            nodes.extend(made[:-1] + [replace(made[-1], kept=kept)])
    return OpGraph(tuple(nodes), output, tuple(unsupported))


def _fixed_device(node: fx.Node) -> str | None:
    """A call given a fixed device object (`device="cpu"`; export.py already turned the meta
    device it ran on back into the inputs' device) cannot be written back: the tensor it
    builds would not follow the inputs to their device."""
    device = next((a for a in (*node.args, *node.kwargs.values()) if isinstance(a, torch.device)), None)
    if device is None:
        return None
    name = getattr(node.target, "__name__", node.target)
    return f"{node.name}: {name} builds a tensor on a fixed device ({device}), not on the inputs' device"


def _python_number(node: fx.Node) -> str | None:
    """A size computed with a function no kernel and no torch expression has (`math.sqrt`
    of a size): torch.export's graph holds it as the number it is at get_inputs' shapes."""
    if node.op != "call_function" or "tensor_meta" in node.meta:
        return None
    name = getattr(node.target, "__name__", node.target)
    return f"{node.name}: {name} of sizes read in forward (a Python number no kernel computes)"


def _inline_constants(traced: fx.GraphModule) -> None:
    """fx keeps a tensor the forward builds from constants (`torch.tensor(0.5)`) as an
    attribute of the traced module only, which ModelNew lacks: a one-element one becomes
    the number it holds (`torch.min(x, c)` becoming the elementwise minimum)."""
    pairwise = {torch.min: torch.minimum, torch.max: torch.maximum, "min": "minimum", "max": "maximum"}
    for node in list(traced.graph.nodes):
        if node.op != "get_attr" or not node.target.startswith("_tensor_constant"):
            continue
        value = getattr(traced, node.target, None)
        if value is None:   # a plain tensor attribute of Model (`self.hidden = torch.randn(...)`), kept by fx only
            raise CaptureError(f"torch.fx kept a tensor attribute of Model as {node.target}, which ModelNew lacks")
        if value.numel() != 1:
            continue
        if value.is_meta:   # built in forward from a parameter (`torch.clamp(self.scale, max=...)`): no value here
            raise CaptureError(f"a one-element tensor forward builds ({node.target}) has no value on the meta device")
        for user in list(node.users):
            user.target = pairwise.get(user.target, user.target)
            user.args = tuple(value.item() if a is node else a for a in user.args)
            user.kwargs = {k: value.item() if v is node else v for k, v in user.kwargs.items()}
        traced.graph.erase_node(node)


def _is_pair(node: fx.Node) -> bool:
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    has_dim = len(node.args) > 1 or "dim" in node.kwargs
    return node.op in ("call_function", "call_method") and name in ("max", "min") and has_dim \
        and not isinstance(node.args[1] if len(node.args) > 1 else None, fx.Node)


def _pick(node: fx.Node, pair: OpNode) -> OpNode:
    """`max(x, dim)[0]` / `.values` is amax, `[1]` / `.indices` is argmax (min likewise); a
    GRU's `[0]` is its output and `[1]` its h_n, the same op with the pick in its attrs."""
    key = node.args[1]
    kept = pair.kept and pair.kept.then(f".{key}" if isinstance(key, str) else f"[{key!r}]")
    if pair.op == "gru":
        return OpNode(node.name, "gru", pair.args, {**pair.attrs, "pick": key}, *meta(node), kept)
    values = key in (0, "values")
    op = {"max": "amax" if values else "argmax", "min": "amin" if values else "argmin"}[pair.op]
    return OpNode(node.name, op, pair.args, dict(pair.attrs), *meta(node), kept)


def _gru(node: fx.Node, module: nn.GRU) -> OpNode:
    """An nn.GRU call, resolved at the getitem that picks its output or h_n (plans/gru.py)."""
    attrs = {"module": node.target, "input_size": module.input_size, "hidden_size": module.hidden_size,
             "num_layers": module.num_layers, "bias": module.bias, "batch_first": module.batch_first,
             "bidirectional": module.bidirectional, "dropout": module.dropout if module.training else 0.0}
    args = refs([a for a in node.args[:2] if a is not None]) + refs([v for k, v in node.kwargs.items() if k == "hx"])
    return OpNode(node.name, "gru", args, attrs, None, None, torch_call(node))


def _convert_node(node: fx.Node, modules: dict, traced: fx.GraphModule) -> list[OpNode] | str:
    shape, dtype = meta(node)
    if node.op == "placeholder":
        return [OpNode(node.name, "input", (), {"arg": node.target}, shape, dtype)]
    if node.op == "get_attr":
        if node.target.startswith("_tensor_constant"):
            return f"{node.name}: a tensor of several constants built in forward"
        return [OpNode(node.name, "param", (), {"path": node.target}, shape, dtype)]
    if node.op == "call_module":
        return _convert_module(node, modules[node.target], shape, dtype)
    if isinstance(node.target, torch._ops.OpOverload):     # export.py found no torch-level name for it
        return f"{node.name}: aten op {node.target} has no torch-level name"
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    name = ALIASES.get(name, name)
    if node.target is getattr and node.args[1] in ("T", "mT", "shape"):
        if node.args[1] == "shape":
            return f"{node.name}: reading .shape in forward is not supported"
        return [OpNode(node.name, "t", refs(node.args[:1]), {}, shape, dtype)]
    if node.target is operator.getitem:
        return f"{node.name}: indexing (getitem) is not supported by the built-in plans"
    if name in ("max", "min") and len(node.args) == 2 and isinstance(node.args[1], fx.Node):
        return [OpNode(node.name, {"max": "maximum", "min": "minimum"}[name], refs(node.args), {}, shape, dtype)]
    if name == "einsum":
        return _einsum(node, shape, dtype)
    if name == "cross_entropy":
        bound = dict(zip(("weight", "size_average", "ignore_index", "reduce", "reduction", "label_smoothing"),
                         node.args[2:]))
        return cross_entropy(node, {**bound, **node.kwargs}, shape, dtype)
    if name in POOL_FUNCTIONS:
        kind, dims = POOL_FUNCTIONS[name]
        bound = dict(zip(POOL_SIGNATURES[kind], node.args[1:]))
        bound.update(node.kwargs)
        return _pool(node, kind, dims, bound, shape, dtype)
    return [_bind(node, name, shape, dtype)]


def _einsum(node: fx.Node, shape, dtype) -> list[OpNode] | str:
    """An einsum that contracts the last index of A with the first of a matrix B
    ('bijl,lk->bijk') is a matrix product of A's rows, seen as an (M, l) view, with B."""
    equation, operands = node.args[0], node.args[1:]
    if not isinstance(equation, str) or len(operands) != 2 or "->" not in equation:
        return f"{node.name}: einsum {equation!r}"
    inputs, out = equation.replace(" ", "").split("->")
    left, right = (inputs.split(",") + [""])[:2]
    if not (len(right) == 2 and left[-1:] == right[0] and out == left[:-1] + right[1]
            and len(set(left + right[1])) == len(left) + 1):
        return f"{node.name}: einsum {equation!r} (only a contraction of A's last index with a matrix's first)"
    a_shape, _ = meta(operands[0])
    rows = 1
    for d in a_shape[:-1]:
        rows *= d
    flat = (rows, a_shape[-1])
    view = OpNode(f"{node.name}_rows", "view", refs(operands[:1]), {"dims": flat}, flat, dtype)
    product = OpNode(f"{node.name}_mm", "mm", (Ref(view.name),) + refs(operands[1:]), {}, (rows, shape[-1]), dtype)
    return [view, product, OpNode(node.name, "view", (Ref(product.name),), {"dims": tuple(shape)}, tuple(shape), dtype)]


def _bind(node: fx.Node, name: str, shape, dtype) -> OpNode:
    if name in VARARG_VIEWS:
        dims = node.args[1:] if not (len(node.args) == 2 and isinstance(node.args[1], (tuple, list))) else node.args[1]
        return OpNode(node.name, name, refs(node.args[:1]), {"dims": tuple(refs(dims))}, shape, dtype)
    names = SIGNATURES.get(name)
    if names is None:  # binary and unary pointwise ops take tensors and scalars positionally
        return OpNode(node.name, name, refs(node.args), dict(node.kwargs), shape, dtype)
    bound = {k: OP_DEFAULTS.get(name, {}).get(k, DEFAULTS.get(k)) for k in names[1:]}
    bound.update(dict(zip(names[1:], node.args[1:])))
    bound.update(node.kwargs)
    tensors = (node.args[0],) + tuple(v for k, v in bound.items() if isinstance(v, fx.Node))
    if name in ("layer_norm", "group_norm"):        # weight and bias keep their places: either may be None
        tensors = (node.args[0], bound["weight"], bound["bias"])
    attrs = {k: v for k, v in bound.items() if not isinstance(v, fx.Node)}
    return OpNode(node.name, name, refs(tensors), attrs, shape, dtype)


CONV_MODULES = {nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d", nn.ConvTranspose1d: "conv_transpose1d",
                nn.ConvTranspose2d: "conv_transpose2d", nn.ConvTranspose3d: "conv_transpose3d"}
ACTIVATIONS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.Mish: "mish",
               nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Softsign: "softsign", nn.SELU: "selu",
               nn.Identity: "identity"}


def _convert_module(node: fx.Node, module: nn.Module, shape, dtype) -> list[OpNode] | str:
    x = refs(node.args[:1])
    kind = type(module)
    if kind in ACTIVATIONS:
        return [OpNode(node.name, ACTIVATIONS[kind], x, {}, shape, dtype)]
    simple = {nn.GELU: ("gelu", {"approximate": getattr(module, "approximate", "none")}),
              nn.Hardtanh: ("hardtanh", {"min_val": getattr(module, "min_val", -1.0),
                                         "max_val": getattr(module, "max_val", 1.0)}),
              nn.LeakyReLU: ("leaky_relu", {"negative_slope": getattr(module, "negative_slope", 0.01)}),
              nn.ELU: ("elu", {"alpha": getattr(module, "alpha", 1.0)}),
              nn.Softplus: ("softplus", {"beta": getattr(module, "beta", 1.0), "threshold": getattr(module, "threshold", 20.0)}),
              nn.Softmax: ("softmax", {"dim": getattr(module, "dim", None)}),
              nn.LogSoftmax: ("log_softmax", {"dim": getattr(module, "dim", None)})}
    if kind in simple:
        op, attrs = simple[kind]
        return [OpNode(node.name, op, x, attrs, shape, dtype)]
    if isinstance(module, nn.Dropout) and module.p == 0.0:
        return [OpNode(node.name, "identity", x, {}, shape, dtype)]
    if kind in POOL_MODULES:
        pool, dims = POOL_MODULES[kind]
        return _pool(node, pool, dims, {k: getattr(module, k) for k in POOL_SIGNATURES[pool] if hasattr(module, k)},
                     shape, dtype)
    if isinstance(module, nn.CrossEntropyLoss):
        return cross_entropy(node, {"weight": module.weight, "ignore_index": module.ignore_index,
                                    "reduction": module.reduction, "label_smoothing": module.label_smoothing},
                             shape, dtype)
    if isinstance(module, nn.TripletMarginLoss):
        return triplet_margin_loss(node, module, shape, dtype)
    if kind in INSTANCE_NORMS and not module.affine and not module.track_running_stats \
            and shape is not None and len(shape) == INSTANCE_NORMS[kind]:      # batched: (N, C, *spatial)
        return _instance_norm(node, module, shape, dtype)
    if kind in BATCH_NORMS and shape is not None and len(shape) >= 3:   # (N, C) stays in PyTorch: strided channels
        return [OpNode(node.name, "batch_norm", x, {"module": node.target}, shape, dtype)]
    layered = {nn.Linear: "linear", nn.LayerNorm: "layer_norm", nn.GroupNorm: "group_norm", **CONV_MODULES}
    if kind not in layered:
        return f"{node.name}: module {kind.__name__} ({node.target}) is not supported by the built-in plans"
    return _layer(node, module, layered[kind], shape, dtype)


INSTANCE_NORMS = {nn.InstanceNorm1d: 3, nn.InstanceNorm2d: 4, nn.InstanceNorm3d: 5}   # the batched rank
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _instance_norm(node: fx.Node, module: nn.Module, shape, dtype) -> list[OpNode] | str:
    """Instance norm without affine or running stats (its statistics are always the
    sample's own) normalises each (sample, channel) plane: a layer norm over the plane,
    seen as the last dim of an (N, C, H*W) view."""
    if shape is None or len(shape) < 3:
        return f"{node.name}: instance norm of a rank-{len(shape or ())} tensor"
    plane = 1
    for d in shape[2:]:
        plane *= d
    rows = tuple(shape[:2]) + (plane,)
    flat = OpNode(f"{node.name}_planes", "view", refs(node.args[:1]), {"dims": rows}, rows, dtype)
    norm = OpNode(f"{node.name}_rows", "layer_norm", (Ref(flat.name),), {"normalized_shape": (plane,),
                                                                       "eps": module.eps}, rows, dtype)
    return [flat, norm, OpNode(node.name, "view", (Ref(norm.name),), {"dims": tuple(shape)}, tuple(shape), dtype)]


def _layer(node: fx.Node, module: nn.Module, op: str, shape, dtype) -> list[OpNode] | str:
    params = []
    for pname in ("weight", "bias"):
        p = getattr(module, pname, None)
        params.append(None if p is None else OpNode(f"{node.name}_{pname}", "param", (),
                                                    {"path": f"{node.target}.{pname}"}, tuple(p.shape), p.dtype))
    attrs = {}
    if op in CONV_MODULES.values():
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"{node.name}: {type(module).__name__} with padding {module.padding_mode!r} {module.padding!r}"
        attrs = {"stride": module.stride, "padding": module.padding, "dilation": module.dilation,
                 "groups": module.groups}
        if op.startswith("conv_transpose"):
            attrs["output_padding"] = module.output_padding
    elif op == "layer_norm":
        attrs = {"normalized_shape": tuple(module.normalized_shape), "eps": module.eps}
    elif op == "group_norm":
        attrs = {"num_groups": module.num_groups, "eps": module.eps}
    args = (Ref(node.args[0].name),) + tuple(Ref(p.name) if p else None for p in params)
    return [p for p in params if p] + [OpNode(node.name, op, args, attrs, shape, dtype)]


POOL_MODULES = {nn.MaxPool1d: ("max_pool", 1), nn.MaxPool2d: ("max_pool", 2), nn.MaxPool3d: ("max_pool", 3),
                nn.AvgPool1d: ("avg_pool", 1), nn.AvgPool2d: ("avg_pool", 2), nn.AvgPool3d: ("avg_pool", 3)}
POOL_FUNCTIONS = {f"{kind.split('_')[0]}_pool{dims}d": (kind, dims) for kind, dims in POOL_MODULES.values()}
# F.max_poolNd / torch.max_poolNd and F.avg_poolNd / torch.avg_poolNd, after the input, in positional order
POOL_SIGNATURES = {"max_pool": ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                   "avg_pool": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                "divisor_override")}


def _pool(node: fx.Node, op: str, dims: int, bound: dict, shape, dtype) -> list[OpNode] | str:
    """A pooling layer or call as op "max_pool" / "avg_pool" with every size a tuple of `dims`
    ints (stride defaults to the kernel, as in PyTorch); the plan decides what it supports."""
    if any(isinstance(v, fx.Node) for v in bound.values()):
        return f"{node.name}: {op} with a size computed in forward"
    tuples = {k: _per_dim(bound.get(k, default), dims)
              for k, default in (("kernel_size", None), ("padding", 0), ("dilation", 1))}
    stride = bound.get("stride")
    attrs = {"dims": dims, "kernel": tuples["kernel_size"],
             "stride": tuples["kernel_size"] if stride in (None, (), []) else _per_dim(stride, dims),
             "padding": tuples["padding"], "dilation": tuples["dilation"],
             "ceil_mode": bool(bound.get("ceil_mode", False)),
             "count_include_pad": bool(bound.get("count_include_pad", True)),
             "divisor_override": bound.get("divisor_override"), "return_indices": bool(bound.get("return_indices"))}
    return [OpNode(node.name, op, refs(node.args[:1]), attrs, shape, dtype)]


def _per_dim(value, dims: int) -> tuple[int, ...]:
    """An int or a sequence of ints, as a tuple of `dims` ints (PyTorch's `_ntuple`)."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims
    return values * dims if len(values) == 1 else values
