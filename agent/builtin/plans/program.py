"""Assemble a whole candidate: imports, helpers, one kernel and wrapper per distinct
stage, and `ModelNew`, whose `__init__` is the problem's own (the same layers in the same
order, so the same weights after `torch.manual_seed(42)`) and whose forward calls the
wrappers. With `config.cuda_graph` the forward is captured once per input shape as a
CUDA graph and replayed on static input buffers (inputs copied in, output cloned out),
so it stays correct for any input of the captured shapes.

    source = build_source(problem, graph, partition(graph), Config())
"""
import ast
import math
import re
import textwrap

import torch.nn as nn

from agent.builtin.ir import OpGraph, Ref
from agent.builtin.partition import Stage, StageKind, Unsupported
from agent.builtin.plans import (batchnorm, conv, groupnorm, gru, library, matmul, pointwise, pool, reduce, rows,
                                 tap_sums, total)
from agent.builtin.plans.common import BROADCAST_HELPER, POINTWISE_SIZES_HELPER, Config, forward_expr, slug
from agent.builtin.plans.sizes import view_dims
from agent.builtin.ops import TANH_HELPER
from tools.problems import Problem

EMITTERS = {StageKind.POINTWISE: pointwise.emit, StageKind.ROWS: rows.emit, StageKind.REDUCE: reduce.emit,
            StageKind.GROUP_NORM: groupnorm.emit, StageKind.MATMUL: matmul.emit, StageKind.CONV: conv.emit,
            StageKind.TOTAL: total.emit, StageKind.POOL: pool.emit, StageKind.TORCH: library.emit,
            StageKind.BATCH_NORM: batchnorm.emit, StageKind.TAP_SUMS: tap_sums.emit, StageKind.RECURRENT: gru.emit}
HELPERS = {"_tanh": TANH_HELPER, "update_running_stats": batchnorm.RUNNING_STATS,   # emitted once, when used
           "_tap_reads": tap_sums.READS, "_broadcast_shape": BROADCAST_HELPER,
           "_pointwise_sizes": POINTWISE_SIZES_HELPER, "_n_major": matmul.N_MAJOR_HELPER}
HEADER = '''"""{title}

Written by kernelpilot's built-in policy (no LLM): the reference forward was captured
with {tracer} and split into {count} stage(s): {stages}.
Launch configuration: {config}.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl
'''
GRAPH_RUNNER = '''

def replay_as_cuda_graph(model, inputs):
    """Capture model.fused_forward once per input shapes as a CUDA graph, then replay it:
    inputs are copied into static buffers and the output is cloned out of the graph's pool."""
    key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
    if getattr(model, "graph_key", None) != key:
        static = [t.clone() for t in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model.fused_forward(*static)      # compile every kernel before the capture
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = model.fused_forward(*static)
        model.cuda_graph, model.static_inputs, model.static_output, model.graph_key = graph, static, output, key
    for static, t in zip(model.static_inputs, inputs):
        static.copy_(t)
    model.cuda_graph.replay()
    return model.static_output.clone()
'''


def build_source(problem: Problem, graph: OpGraph, stages: list[Stage], config: Config) -> str:
    kernels, wrappers, body, helpers = [], [], [], set()
    names: dict[str, str] = {}                      # kernel+wrapper text (named __NAME__) -> chosen name
    for stage in stages:
        if stage.kind is StageKind.VIEW:
            body.append(view_line(stage, graph))
            continue
        emitted = EMITTERS[stage.kind](stage, graph, config, "__NAME__")
        if not emitted.kernel:                      # an op kept in PyTorch with nothing fused after it
            body.append(emitted.pre_call)
            continue
        key = emitted.kernel + emitted.wrapper
        if key not in names:
            name = _unique(f"fused_{slug(stage)}", set(names.values()))
            names[key] = name
            kernels.append(emitted.kernel.replace("__NAME__", name))
            wrappers.append(emitted.wrapper.replace("__NAME__", name))
            helpers |= emitted.helpers
        if emitted.pre_call:
            body.append(emitted.pre_call)
        body.append(emitted.call.replace("__NAME__", names[key]))
    if not kernels:
        raise Unsupported("no op of this forward has a Triton plan (every op would stay in PyTorch), "
                          "so there is no kernel to write")
    body.append(f"return {forward_expr(graph.output, graph)}")
    title = f"Triton candidate for {problem.name}: built-in policy plan."
    described = ", ".join(f"{s.kind.value}({slug(s)})" for s in stages if s.kind is not StageKind.VIEW)
    header = HEADER.format(title=title, tracer=graph.tracer, count=len(stages), stages=described,
                           config=_config_text(config))
    parts = ([header, _imports(problem), _definitions(problem)] + [HELPERS[h] for h in sorted(helpers)]
             + kernels + wrappers)
    if config.cuda_graph:
        parts.append(GRAPH_RUNNER)
    parts.append(model_class(problem, graph, body, config.cuda_graph))
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


def _config_text(config: Config) -> str:
    return ", ".join(f"{k}={v}" for k, v in vars(config).items())


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def view_line(stage: Stage, graph: OpGraph) -> str:
    """A torch view (no data moved) as one forward line."""
    node = stage.anchor
    a = forward_expr(node.refs[0], graph)
    arg = lambda v: forward_expr(v.name, graph) if isinstance(v, Ref) else repr(v)
    text = {
        "t": f"{a}.T" if len(graph.node(node.refs[0]).shape) == 2 else f"{a}.mT",
        "transpose": f"{a}.transpose({node.attrs.get('dim0')}, {node.attrs.get('dim1')})",
        "unsqueeze": f"{a}.unsqueeze({node.attrs.get('dim')})",
        "squeeze": f"{a}.squeeze({node.attrs.get('dim')})" if node.attrs.get("dim") is not None else f"{a}.squeeze()",
        "flatten": f"{a}.flatten({node.attrs.get('start_dim')}, {node.attrs.get('end_dim')})",
        "identity": a, "contiguous": f"{a}.contiguous()",
        "size": f"{a}.size({node.attrs.get('dim')})" if node.attrs.get("dim") is not None else f"{a}.size()",
    }.get(node.op)
    if node.op in ("view", "reshape", "permute"):
        method = "reshape" if node.op == "view" else node.op
        dims = (node.op != "permute" and view_dims(node, graph)) or [arg(d) for d in node.attrs["dims"]]
        text = f"{a}.{method}({', '.join(dims)})"
    if text is None:
        raise Unsupported(f"{node.name}: view op {node.op!r}")
    return f"{node.name} = {text}"


def _imports(problem: Problem) -> str:
    """The problem's own imports and module-level constants its __init__ may read."""
    tree = ast.parse(problem.source)
    keep = [ast.get_source_segment(problem.source, n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "".join(f"{line}\n" for line in keep if f"\n{line}\n" not in HEADER)


def model_class(problem: Problem, graph: OpGraph, body: list[str], cuda_graph: bool) -> str:
    init = _init_source(problem)
    args = [n.attrs["arg"] for n in graph.nodes if n.op == "input"]
    signature = ", ".join(["self"] + args)
    lines = "\n".join(f"        {line}" for line in body)
    if not cuda_graph:
        return f"\n\nclass ModelNew(nn.Module):\n{init}\n    def forward({signature}):\n{lines}\n"
    return (f"\n\nclass ModelNew(nn.Module):\n{init}\n    def forward({signature}):\n"
            f"        return replay_as_cuda_graph(self, [{', '.join(args)}])\n\n"
            f"    def fused_forward({signature}):\n{lines}\n")


def _definitions(problem: Problem) -> str:
    """What Model's class body reads from the problem file, and what that reads in turn: its
    classes and functions (the blocks a network's __init__ builds: a bottleneck, an Inception
    module, a channel shuffle) and module-level assignments to plain names (`to_2tuple =
    _ntuple(2)`; a constant as the loaded module holds it, so at the small size its lowered
    value). Nothing else of the file comes along: code Model never reads is not the candidate's."""
    tree, name = ast.parse(problem.source), problem.module.Model.__name__
    defined = {d: node for node in tree.body for d in _defines(node)
               if d not in (name, "Model", "get_inputs", "get_init_inputs")}
    model = _model_class(tree, name)
    read = _names_read([model] if model else [])
    kept: list[ast.stmt] = []
    while more := [node for d, node in defined.items() if d in read and node not in kept]:
        kept += more
        read |= _names_read(more)
    return "\n\n".join(_value_line(problem, n) or _lines(problem.source, n) for n in tree.body if n in kept)


def _defines(node: ast.stmt) -> list[str]:
    """The names a module-level statement binds, where it is a definition or an assignment to
    plain names (`x = ...`, `a, b = ...`); none for anything else (`Model.__doc__ = ...`)."""
    if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    names = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return [n.id for n in names] if names and all(isinstance(n, ast.Name) for n in names) else []


def _names_read(nodes: list[ast.stmt]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _value_line(problem: Problem, node: ast.stmt) -> str | None:
    """`name = value` from the loaded module for a constant bound to one plain name (`x = ...`)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        return None
    name = targets[0].id
    value = problem.module.__dict__.get(name)
    simple = (int, float, bool, str)
    values = value if type(value) is tuple else (value,)
    if all(type(v) in simple and (type(v) is not float or math.isfinite(v)) for v in values):
        return f"{name} = {value!r}\n"
    return None


def _lines(source: str, node: ast.stmt) -> str:
    """A statement's source with its decorators, dedented."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return textwrap.dedent("\n".join(source.splitlines()[first - 1:node.end_lineno])) + "\n"


def _init_source(problem: Problem) -> str:
    """ModelNew's `__init__` and the rest of Model's class body but `forward` (class attributes such
    as `expansion`, helper methods such as `_make_layer`): the ones written in the class `Model`
    names (`Model = Scaler` too), `super(Scaler, self)` made `super(ModelNew, self)`; no
    `__init__` where Model keeps nn.Module's own (a forward-only Model, a function wrapped by
    `chat`'s function mode)."""
    cls = problem.module.Model
    model = _model_class(ast.parse(problem.source), cls.__name__)
    members = [n for n in (model.body if model else []) if not _is_docstring(n)
               and not (isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "forward")]
    if not any(isinstance(n, ast.FunctionDef) and n.name == "__init__" for n in members) \
            and cls.__init__ is not nn.Module.__init__:
        owner = next(c.__name__ for c in cls.__mro__ if "__init__" in vars(c))
        raise Unsupported(f"Model's __init__ comes from {owner}, not from a class written in the problem file, "
                          "so its layers cannot be reproduced")
    text = "\n".join(_lines(problem.source, n) for n in members)
    text = re.sub(rf"super\(\s*{re.escape(cls.__name__)}\s*,", "super(ModelNew,", text)
    return textwrap.indent(text, "    ") if text else ""


def _model_class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    """The class statement `Model` names (`Model = Scaler`: Scaler's), if the file writes one."""
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
