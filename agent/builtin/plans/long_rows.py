"""Plan: a row program that walks its row in BLOCK_N steps, for rows too long to hold in
registers (softmax over 393216 columns, a layer norm over a whole (C, H, W) sample, a
matrix-vector product with K = 2**20) or, as a search variant, shorter ones.

The stage's values fall in two levels: row-level (one per element: loads, the pointwise
chain, a softmax's output) and row-scalars (one per row: a sum, a max, a layer norm's
mean). Each row reduction is one loop over the row that recomputes the row-level
values it needs from the loads — memory is re-read, never written — and folds them into
a BLOCK_N-wide accumulator; a softmax's max and sum of exponentials are one loop (the
online softmax), a layer norm two (mean, then the variance around it: fp32 stays exact).
A last loop recomputes and stores the row-level outputs; row-scalar outputs are stored
once. A softmax therefore reads its row twice and writes it once. Few long rows are split
into segments instead (split_rows.py), a launch per fold.
"""
from dataclasses import dataclass

from agent.builtin import ops
from agent.builtin.ir import OpGraph, OpNode, Ref
from agent.builtin.partition import Operand, Stage, Unsupported
from agent.builtin.plans.common import Body, Config, Emitted, forward_expr, load_cast
from agent.builtin.plans import split_rows
from agent.builtin.plans.row_wrapper import NEG_INF, POS_INF, wrapper

DEFAULT_BLOCK = 4096
# reduction -> (accumulator's initial value, how a block folds in)
FOLDS = {
    "sum": ("0.0", "{acc} + tl.where(mask, {a}, 0.0)"),
    "mean": ("0.0", "{acc} + tl.where(mask, {a}, 0.0)"),
    "amax": (NEG_INF, "tl.maximum({acc}, tl.where(mask, {a}, {NEG_INF}))"),
    "amin": (POS_INF, "tl.minimum({acc}, tl.where(mask, {a}, {POS_INF}))"),
}
# a fold's reduction of a BLOCK_N-wide accumulator, or of the segments' partials (split_rows.py)
REDUCE = {"sum": "tl.sum({x}, axis=0)", "mean": "tl.sum({x}, axis=0)", "amax": "tl.max({x}, axis=0)",
          "amin": "tl.min({x}, axis=0)"}


def loopable(stage: Stage) -> bool:
    """Can this row program walk its row? Scans (cumsum) and arg-reductions cannot yet."""
    return all(n.op in ops.LOOPED_ROW_OPS for n in stage.body if n.op in ops.ROW_REDUCTIONS | ops.ROW_MAPS)


def emit(stage: Stage, graph: OpGraph, config: Config, name: str) -> Emitted:
    if not loopable(stage):
        raise Unsupported(f"a scan or arg-reduction over rows of {stage.shape[-1]} elements (longer than "
                          f"{ops.MAX_ROW}, the most a row program holds in registers)")
    if config.row_split:
        return split_rows.emit(stage, graph, config, name, writer(stage, graph, split=True))
    body_writer = writer(stage, graph)
    body, kinds = body_writer.body, body_writer.kinds
    outs = [f"out{j}" for j in range(len(stage.outputs))]
    lines = [line for piece in body_writer.lines for line in rendered(piece)] + body_writer.store(outs)
    params = "".join(f"    {body.var[n]}_ptr,  # {kinds[n].value} operand\n" for n in body.inputs)
    params += "".join(f"    {o}_ptr,  # output\n" for o in outs)
    kernel = f'''
@triton.jit
def {name}_kernel(
{params}    n_cols,  # row length (the last dim)
    BLOCK_N: tl.constexpr,  # elements per step along the row
):
    row = tl.program_id(axis=0).to(tl.int64)  # rows * n_cols can pass 2**31
''' + "".join(f"    {line}\n" for line in lines)
    return Emitted(kernel, wrapper(stage, graph, body, kinds, outs, name, config,
                                   config.row_block or DEFAULT_BLOCK),
                   f"{', '.join(stage.outputs)} = {name}({', '.join(forward_expr(n, graph) for n in body.inputs)})",
                   frozenset(body.helpers))


def writer(stage: Stage, graph: OpGraph, split: bool = False) -> "_Writer":
    """The stage's kernel body as pieces: lines, and one Fold per loop over the row."""
    body_writer = _Writer(stage, graph, split)
    for node in stage.body:
        body_writer.add(node)
    return body_writer


@dataclass(frozen=True)
class Fold:
    """One reduction loop over the row: `kind` (a FOLDS key) folds `value`, computed by
    `block`'s lines for each step, into acc_<index>; its row-scalar is r_<index>."""

    index: int
    kind: str
    block: list[str]
    value: str

    @property
    def acc(self) -> str:
        return f"acc_{self.index}"

    @property
    def result(self) -> str:
        return f"r_{self.index}"

    @property
    def neutral(self) -> str:
        return FOLDS[self.kind][0]

    def partial(self) -> str:
        """The segment's share of the row-scalar (a mean's is its sum)."""
        return REDUCE[self.kind].format(x=self.acc)

    def combined(self, parts: str) -> str:
        """The row-scalar from `parts`: the segments' partials, or the whole row's accumulator."""
        return REDUCE[self.kind].format(x=parts) + (" / n_cols" if self.kind == "mean" else "")

    def loop(self, begin: str, end: str) -> list[str]:
        init, fold = FOLDS[self.kind]
        return ([f"{self.acc} = tl.full((BLOCK_N,), {init}, dtype=tl.float32)",
                 f"for start in range({begin}, {end}, BLOCK_N):"] + [f"    {line}" for line in self.block]
                + [f"    {self.acc} = {fold.format(acc=self.acc, a=self.value, NEG_INF=NEG_INF, POS_INF=POS_INF)}"])


@dataclass(frozen=True)
class OnlineMax:
    """A softmax's two statistics in one loop (the online softmax): each lane keeps its running
    max m and its sum s of exp(x - m), rescaled by exp(m_old - m_new) when the max grows; the
    lanes are merged at the end. It reads the row once where two folds read it twice."""

    index: int
    block: list[str]
    value: str

    @property
    def results(self) -> tuple[str, str]:
        return f"r_{self.index}", f"s_{self.index}"

    def lines(self) -> list[str]:
        m, s, (row_max, row_sum) = f"acc_{self.index}", f"sum_{self.index}", self.results
        return ([f"{m} = tl.full((BLOCK_N,), {NEG_INF}, dtype=tl.float32)",
                 f"{s} = tl.full((BLOCK_N,), 0.0, dtype=tl.float32)",
                 "for start in range(0, n_cols, BLOCK_N):"] + [f"    {line}" for line in self.block]
                + [f"    x = tl.where(mask, {self.value}, {NEG_INF})",
                   f"    grown = tl.maximum({m}, x)",
                   f"    {s} = {s} * tl.where(grown == {NEG_INF}, 0.0, tl.exp({m} - grown)) "   # no lane seen yet: 0
                   f"+ tl.where(mask, tl.exp(x - grown), 0.0)",
                   f"    {m} = grown",
                   f"{row_max} = tl.max({m}, axis=0)",
                   f"{row_sum} = tl.sum(tl.where({m} == {NEG_INF}, 0.0, {s} * tl.exp({m} - {row_max})), axis=0)"])


def rendered(piece: "str | Fold | OnlineMax") -> list[str]:
    """A piece of a one-program-per-row kernel: a line, or a loop and its results."""
    if isinstance(piece, str):
        return [piece]
    if isinstance(piece, OnlineMax):
        return piece.lines()
    return piece.loop("0", "n_cols") + [f"{piece.result} = {piece.combined(piece.acc)}"]


class _Writer:
    """Emits the kernel body: row-scalars in order, each reduction as its loop(s)."""

    def __init__(self, stage: Stage, graph: OpGraph, split: bool = False):
        self.stage, self.graph, self.split = stage, graph, split
        # the span a program walks: the whole row, or its segment (split_rows.py)
        self.begin, self.end = ("lo", "hi") if split else ("0", "n_cols")
        self.body = Body(stage, graph)
        self.kinds = self.body.kinds(stage.shape)
        if any(k not in (Operand.FULL, Operand.COL, Operand.ROW, Operand.SCALAR) for k in self.kinds.values()):
            raise Unsupported("a per-channel or per-plane operand in a row program")
        self.recipes: dict[str, OpNode] = {}    # row-level values, recomputed in every loop that needs them
        self.stats: dict[str, tuple[str, str]] = {}    # softmax: (max, sum); layer norm: (mean, rstd)
        self.lines: list[str | Fold | OnlineMax] = [self._load(n) for n in self.body.inputs if not self._row_level(n)]
        self.loops = 0

    def _row_level(self, name: str) -> bool:
        if name in self.kinds:
            return self.kinds[name] in (Operand.FULL, Operand.COL)
        return self.graph.node(name).shape == self.stage.shape

    def add(self, node: OpNode) -> None:
        if node.op in FOLDS or node.op in ("max", "min", "norm", "logsumexp"):
            self._reduction(node)
        elif node.op in ("softmax", "log_softmax"):
            self.stats[node.name] = self._max_and_sum_exp(node.refs[0])
            self.recipes[node.name] = node
        elif node.op == "layer_norm":
            a = node.refs[0]
            mean = self._fold(a, "mean")
            var = self._fold(a, "mean", lambda v: f"({v} - {mean}) * ({v} - {mean})")
            rstd = f"rstd_{self.loops}"
            self.lines.append(f"{rstd} = 1.0 / tl.sqrt({var} + {float(node.attrs['eps'])!r})")
            self.stats[node.name] = (mean, rstd)
            self.recipes[node.name] = node
        elif self._row_level(node.name):
            self.recipes[node.name] = node
        else:
            self.lines.append(self.body.pointwise(node))     # row-scalar arithmetic, once per row

    def _reduction(self, node: OpNode) -> None:
        a, op = node.refs[0], node.op
        var = self.body.fresh(node.name)
        if op == "logsumexp":
            m, total = self._max_and_sum_exp(a)
            self.lines.append(f"{var} = {m} + tl.log({total})  # logsumexp")
        elif op == "norm":
            p = node.attrs.get("p", 2)
            if p not in (1, 2, 1.0, 2.0, "fro"):
                raise Unsupported(f"{node.name}: norm with p={p!r}")
            total = self._fold(a, "sum", (lambda v: f"tl.abs({v})") if p in (1, 1.0) else (lambda v: f"{v} * {v}"))
            self.lines.append(f"{var} = {total if p in (1, 1.0) else f'tl.sqrt({total})'}  # norm p={p}")
        else:
            self.lines.append(f"{var} = {self._fold(a, 'amax' if op == 'max' else 'amin' if op == 'min' else op)}"
                              f"  # {op} over the row")

    def _fold(self, source: str, kind: str, term=lambda v: v) -> str:
        """One loop over the row folding `term(source's variable)` with `kind`; returns
        the row-scalar it leaves."""
        self.loops += 1
        fold = Fold(self.loops, kind, self._block([source]), term(self.body.var[source]))
        self.lines.append(fold)
        return fold.result

    def _max_and_sum_exp(self, source: str) -> tuple[str, str]:
        """The row's max and its sum of exp(x - max): one online loop (OnlineMax), or, split
        into segments, two folds (a segment's partial sum needs the whole row's max)."""
        if self.split:
            m = self._fold(source, "amax")
            return m, self._fold(source, "sum", lambda v: f"tl.exp({v} - {m})")
        self.loops += 1
        online = OnlineMax(self.loops, self._block([source]), self.body.var[source])
        self.lines.append(online)
        return online.results

    def _block(self, targets: list[str]) -> list[str]:
        """Lines computing the row-level `targets` for the block at `start`: their loads,
        then every row-level op they depend on, in graph order."""
        needed, stack = set(), list(targets)
        while stack:
            name = stack.pop()
            if name in needed or not self._row_level(name):
                continue
            needed.add(name)
            if name in self.recipes:
                stack += [r for r in self.recipes[name].refs]
        lines = ["offs_n = start + tl.arange(0, BLOCK_N)", f"mask = offs_n < {self.end}"]
        lines += [self._load(n) for n in self.body.inputs if n in needed]
        for node in self.stage.body:
            if node.name in needed and node.name in self.recipes:
                lines += self._render(node)
        return lines

    def _render(self, node: OpNode) -> list[str]:
        if node.op in ("softmax", "log_softmax"):
            (m, s), a = self.stats[node.name], self.body.var[node.refs[0]]
            expr = f"tl.exp({a} - {m}) / {s}" if node.op == "softmax" else f"{a} - {m} - tl.log({s})"
            return [f"{self.body.fresh(node.name)} = {expr}  # {node.op}"]
        if node.op == "layer_norm":
            (mean, rstd), a = self.stats[node.name], self.body.var[node.refs[0]]
            weight, bias = (node.args + (None, None))[1:3]
            y = f"({a} - {mean}) * {rstd}"
            y += f" * {self.body.var[weight.name]}" if isinstance(weight, Ref) else ""
            y += f" + {self.body.var[bias.name]}" if isinstance(bias, Ref) else ""
            return [f"{self.body.fresh(node.name)} = {y}  # layer_norm"]
        return [self.body.pointwise(node)]

    def _load(self, name: str) -> str:
        var, kind, node = self.body.var[name], self.kinds[name], self.graph.node(name)
        index = {Operand.FULL: "row * n_cols + offs_n", Operand.COL: "offs_n"}
        if kind in index:
            return f"{var} = tl.load({var}_ptr + {index[kind]}, mask=mask, other=0.0){load_cast(node)}"
        return f"{var} = tl.load({var}_ptr{' + row' if kind is Operand.ROW else ''}){load_cast(node)}"

    def store(self, outs: list[str]) -> list[str]:
        row_outs = [(o, v) for o, v in zip(outs, self.stage.outputs) if self._row_level(v)]
        lines = []
        if row_outs:
            lines += [f"for start in range({self.begin}, {self.end}, BLOCK_N):"]
            lines += [f"    {line}" for line in self._block([v for _, v in row_outs])]
            lines += [f"    tl.store({o}_ptr + row * n_cols + offs_n, {self.body.var[v]}.to({o}_ptr.dtype.element_ty), "
                      "mask=mask)" for o, v in row_outs]
        scalars = [f"tl.store({o}_ptr + row, {self.body.var[v]}.to({o}_ptr.dtype.element_ty))"
                   for o, v in zip(outs, self.stage.outputs) if not self._row_level(v)]
        if scalars and self.split:      # every segment knows the row-scalars: the first one stores them
            return lines + ["if seg == 0:"] + [f"    {line}" for line in scalars]
        return lines + scalars
