"""The torch.export fallback of the capture step, for forwards torch.fx cannot trace (sizes
used as Python numbers: `range(x.shape[1])`): export runs them on fake tensors, so those
sizes become constants at get_inputs' shapes, unless exported `dynamic` (each input dim symbolic:
a size read in forward stays `x.size(d)`). The aten graph is rewritten into the form
`capture.convert` reads: an aten call with a torch builtin of the same schema calls it
(`aten.softmax.int` as `torch.softmax`), arguments `ir.SIGNATURES` does not place
going by schema keyword; a linear, convolution or norm with a module's own weights and
settings is that module's call again. Other aten calls stay as they are.

    module = exported_module(model, inputs)      # meta-device model and inputs
    ShapeProp(module).propagate(*inputs)
    graph = convert(module)
"""
import types

import torch
import torch.fx as fx
import torch.nn as nn

from agent.builtin.ir import ALIASES, SIGNATURES, CaptureError

aten = torch.ops.aten
LAYERS = {aten.linear.default: nn.Linear, aten.conv1d.default: nn.Conv1d, aten.conv2d.default: nn.Conv2d,
          aten.conv3d.default: nn.Conv3d, aten.conv_transpose1d.default: nn.ConvTranspose1d,
          aten.conv_transpose2d.input: nn.ConvTranspose2d, aten.conv_transpose3d.input: nn.ConvTranspose3d,
          aten.layer_norm.default: nn.LayerNorm, aten.group_norm.default: nn.GroupNorm}
COPIES = {aten.lift_fresh_copy.default, aten.detach_.default, aten.detach.default}   # what export wraps constants in


def exported_module(model: nn.Module, inputs: list[torch.Tensor], dynamic: bool = False) -> fx.GraphModule:
    """`model`'s forward as a GraphModule that `convert` reads (raises CaptureError if export fails).
    `dynamic`: every input dim symbolic where export can keep it so, so a size the forward reads
    is `x.size(d)` in the graph, not the number it is at get_inputs' shapes."""
    shapes = tuple({d: torch.export.Dim.AUTO for d in range(x.dim())} for x in inputs) if dynamic else None
    try:
        module = torch.export.export(model, tuple(inputs), dynamic_shapes=shapes, strict=False).module()
    except Exception as error:  # an export failure is data for the analysis, not a crash
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        raise CaptureError(f"torch.export could not capture Model.forward: {type(error).__name__}: {reason}") from None
    graph = module.graph
    for node in list(graph.nodes):
        if node.target in ("_guards_fn", aten._assert_tensor_metadata.default):
            graph.erase_node(node)          # export's checks of its own trace, no values
        elif node.op == "get_attr" and not _owned(model, node.target):
            _name_constant(module, node)
        elif node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload):
            _follow_inputs(node)
            if not _restore_layer(node, module, model):
                _to_torch_level(node)
    output = graph.output_node()
    if isinstance(output.args[0], (tuple, list)) and len(output.args[0]) == 1:
        output.args = (output.args[0][0],)          # convert reads one returned node
    for node in [n for n in graph.nodes if n.op == "get_attr" and not n.users]:
        graph.erase_node(node)
    module.delete_submodule("_guards_fn")
    graph.set_codegen(fx.graph.CodeGen())   # a plain forward(*inputs) -> output, not export's pytree one
    module.recompile()
    return module


def _follow_inputs(node: fx.Node) -> None:
    """Export ran on meta tensors, so a tensor the forward builds on its inputs' device
    (`torch.ones(n, device=q.device)`) carries `device=meta`: it becomes the first input's
    `.device` again, as torch.fx records it. Other fixed devices stay (and are reported)."""
    if not any(isinstance(a, torch.device) and a.type == "meta" for a in (*node.args, *node.kwargs.values())):
        return
    first = next(n for n in node.graph.nodes if n.op == "placeholder")
    with node.graph.inserting_before(node):
        device = node.graph.call_function(getattr, (first, "device"))
    swap = lambda a: device if isinstance(a, torch.device) and a.type == "meta" else a   # noqa: E731
    node.args = tuple(swap(a) for a in node.args)
    node.kwargs = {k: swap(v) for k, v in node.kwargs.items()}


def _owned(model: nn.Module, target: str) -> bool:
    """Is `target` one of the model's own tensors (not a constant export lifted out of forward)?"""
    value = model
    for part in target.split("."):
        value = getattr(value, part, None)
    return isinstance(value, torch.Tensor)


def _name_constant(module: fx.GraphModule, node: fx.Node) -> None:
    """A tensor the forward builds from constants: named as symbolic_trace names it, so
    `convert` inlines a one-element one and reports the others, as on the fx path."""
    index = sum(1 for name, _ in module.named_buffers() if name.startswith("_tensor_constant"))
    name = f"_tensor_constant{index}"
    value = module
    for part in node.target.split("."):     # a constant lifted inside a submodule: `layers.0.attn.lifted_tensor_0`
        value = getattr(value, part)
    module.register_buffer(name, value)
    node.target = name
    copies = [u for u in node.users if u.target in COPIES]
    while copies:
        copy = copies.pop()
        copies += [u for u in copy.users if u.target in COPIES]
        copy.replace_all_uses_with(node)
        node.graph.erase_node(copy)


def _bound(op: torch._ops.OpOverload, node: fx.Node) -> dict:
    schema = op._schema.arguments       # every argument by name: as passed, else its default
    defaults = {a.name: a.default_value for a in schema if a.has_default_value()}
    return {**defaults, **dict(zip((a.name for a in schema), node.args)), **node.kwargs}


def _restore_layer(node: fx.Node, module: fx.GraphModule, model: nn.Module) -> bool:
    """An aten layer call that is exactly what a submodule's forward passes, as that module's call."""
    kind = LAYERS.get(node.target)
    if kind is None:
        return False
    bound = _bound(node.target, node)
    weight = bound["weight"]
    if not (isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target.endswith(".weight")):
        return False
    path = weight.target.removesuffix(".weight")
    layer = model.get_submodule(path)
    if type(layer) is not kind or any(not _same(bound[k], v) for k, v in _settings(layer, path).items()):
        return False
    with node.graph.inserting_before(node):
        call = node.graph.call_module(path, (bound["input"],))
    call.meta.update(node.meta)
    node.replace_all_uses_with(call)
    node.graph.erase_node(node)
    module.set_submodule(path, layer)   # export keeps a bare nn.Module there; convert reads the layer's type
    return True


def _settings(layer: nn.Module, path: str) -> dict:
    """What the layer's own forward passes to its functional form, by aten argument name."""
    settings = {"bias": None if layer.bias is None else f"{path}.bias"}
    if isinstance(layer, nn.modules.conv._ConvNd):
        settings.update(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        if layer.transposed:
            settings["output_padding"] = layer.output_padding
    elif isinstance(layer, nn.LayerNorm):
        settings.update(normalized_shape=layer.normalized_shape, eps=layer.eps)
    elif isinstance(layer, nn.GroupNorm):
        settings.update(num_groups=layer.num_groups, eps=layer.eps)
    return settings


def _same(value, expected) -> bool:
    if isinstance(value, fx.Node):
        return value.op == "get_attr" and value.target == expected
    if isinstance(value, (tuple, list)) or isinstance(expected, (tuple, list)):   # `1` is `[1, 1]`, as aten reads it
        value, expected = (tuple(v) if isinstance(v, (tuple, list)) else (v,) for v in (value, expected))
        value, expected = (v * max(len(value), len(expected)) if len(v) == 1 else v for v in (value, expected))
    return value == expected and type(value) is type(expected)


def _to_torch_level(node: fx.Node) -> None:
    """The aten call through the torch builtin of the same schema, arguments placed as
    `convert` binds them; left alone when there is none or a position means another thing."""
    op = node.target
    if op is aten.view.default:
        node.op, node.target = "call_method", "view"
        return
    if op is aten.sym_size.int:         # a size the forward reads, symbolic under `dynamic`
        node.op, node.target = "call_method", "size"
        return
    found = (getattr(ns, op._opname, None) for ns in (torch, torch._C._nn)) if op.namespace == "aten" else ()
    fn = next((f for f in found if isinstance(f, types.BuiltinFunctionType)), None)   # not a Python wrapper
    if fn is None:
        return
    schema, args = op._schema.arguments, list(node.args)
    known = SIGNATURES.get(ALIASES.get(fn.__name__, fn.__name__))
    if known is not None:
        keep = min(len(args), len(known))
        if any(schema[i].name != known[i] for i in range(1, keep)):   # e.g. mse_loss's int `reduction`
            return
    else:   # pointwise ops read their first two operands: later scalars (rsub's alpha) go by name
        keep = min(len(args), max([2] + [i + 1 for i, a in enumerate(args) if isinstance(a, fx.Node)]))
    moved = {schema[i].name: args[i] for i in range(keep, len(args))}
    by_name = {a.name: a for a in schema}
    kwargs = {k: v for k, v in {**moved, **node.kwargs}.items()
              if not (by_name[k].has_default_value() and _same(v, by_name[k].default_value))}
    if keep > 1 and schema[1].name == "dim" and isinstance(args[1], list) and len(args[1]) == 1:
        args[1] = args[1][0]        # aten's int[1] dim: `mean(x, [-1])` is `mean(x, -1)`
    node.target, node.args, node.kwargs = fn, tuple(args[:keep]), kwargs
