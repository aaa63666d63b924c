"""Decontamination: no generated problem may have the op graph and sizes of an evaluation problem.

A problem's signature is computed from the op graph the built-in policy captures
(agent/builtin/capture.py: torch.fx, shapes propagated on the meta device at the
problem's full size, so a KernelBench level-3 model costs no memory): every node is
hashed from its canonical op name ("linear", "relu", "softmax", ... whatever spelling the
source used), its output shape and the sorted hashes of its tensor arguments, so the
input shapes and parameter shapes are part of it. Left out on purpose, so that more
problems count as the same: node and variable names, the order the forward was written
in, scalar constants (a scale of 0.5 or 2.0), dim and eps arguments beyond what the shapes
show, and dtypes (an fp16 copy of an evaluation problem is still that problem).
Pass-through ops (clone, contiguous, identity) are skipped.

`evaluation_set` computes the signatures of a KernelBench checkout's levels 1-3
(`tools.problems.find_problem_files`); a problem there that cannot be loaded or traced
is skipped and listed, never fatal. Tracing all 250 takes minutes (level 3's LSTMs and
GRUs most of it), so the result is cached under $KERNELPILOT_HOME/cache/, keyed by every
file's content hash and by the source of the code that computes signatures.
`decontaminate` drops each generated problem whose signature is one of them, saying
which file it matches.

    found = evaluation_set("~/KernelBench")
    result = decontaminate(generate(seed=0, count=100), found)
    print(len(result.kept), [d.reason for d in result.dropped])
"""
import contextlib
import hashlib
import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import agent.builtin.capture
import agent.builtin.export
import agent.builtin.ir
import agent.builtin.torch_call
from agent.builtin.capture import capture
from agent.builtin.ir import OpGraph
from policy_training.drafts import GeneratedProblem
from tools.files import write_atomic
from tools.home import prepare_home
from tools.problems import ProblemError, find_problem_files, load_problem, source_hash

LEVELS = (1, 2, 3)
PASS_THROUGH = frozenset({"clone", "contiguous", "identity"})


@dataclass(frozen=True)
class Signature:
    digest: str                             # the graph's hash: equal digests, same op graph and sizes
    ops: tuple[str, ...]                    # the ops in graph order (inputs and parameters left out), to explain
    inputs: tuple[tuple[int, ...], ...]     # the forward's input shapes, to explain

    def describe(self) -> str:
        shapes = ", ".join("x".join(map(str, shape)) for shape in self.inputs)
        return f"{' -> '.join(self.ops)} on {shapes}"


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class EvaluationSet:
    root: str
    signatures: dict[str, str]              # digest -> the first evaluation file with it (relative to root)
    checked: int                            # files whose signature was computed
    skipped: tuple[Skipped, ...]            # files that could not be loaded or traced


@dataclass(frozen=True)
class Dropped:
    name: str
    hash: str
    reason: str


@dataclass(frozen=True)
class Decontamination:
    evaluation: EvaluationSet
    kept: tuple[GeneratedProblem, ...]
    dropped: tuple[Dropped, ...]


def graph_signature(graph: OpGraph) -> Signature:
    digests: dict[str, str] = {}
    for node in graph.nodes:
        children = tuple(sorted(digests[name] for name in node.refs))
        if node.op in PASS_THROUGH and len(children) == 1:
            digests[node.name] = children[0]
            continue
        op = node.kept.template if node.op == "torch" and node.kept else node.op
        digests[node.name] = _digest((op, node.shape, children))
    ends = [graph.output] if graph.output else [n.name for n in graph.nodes if not graph.users(n.name)]
    ops = tuple(n.op for n in graph.nodes if n.op not in ("input", "param") and n.op not in PASS_THROUGH)
    inputs = tuple(n.shape for n in graph.nodes if n.op == "input")
    return Signature(_digest(tuple(sorted(digests[name] for name in ends))), ops, inputs)


def problem_signature(path: str | Path) -> Signature:
    """The signature of a problem file at its full size (raises ProblemError or CaptureError)."""
    return graph_signature(capture(load_problem(path)))


def evaluation_set(root: str | Path, levels: Sequence[int] = LEVELS, cache: bool = True,
                   log: Callable[[str], None] | None = None) -> EvaluationSet:
    """Signatures of a KernelBench checkout's problems (its root, its `KernelBench/` folder);
    `log` hears one line saying whether they came from the cache."""
    log = log or (lambda message: None)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ProblemError(f"{root}: no such KernelBench checkout (a folder with level1..level3)")
    try:
        files = [f for f in find_problem_files(root) if f.level in levels]
    except ProblemError:        # a folder of no *.py at all
        files = []
    if not files:
        raise ProblemError(f"{root}: no KernelBench problems under it (expected level1..level3 folders of *.py)")
    cached = _cache_path(root, [f.path for f in files]) if cache else None
    if cached is not None and cached.is_file():
        log(f"signatures of {len(files)} KernelBench problems: cached in {cached}")
        return _read_cache(cached, root)
    log(f"tracing {len(files)} KernelBench problems (minutes the first time: level 3's RNNs)")
    signatures, skipped = {}, []
    for file in files:
        where = str(file.path.relative_to(root))
        try:
            with _quiet_torch():
                signature = problem_signature(file.path)
        except Exception as error:  # an evaluation file is outside input: any failure skips it, named and counted
            skipped.append(Skipped(where, f"{type(error).__name__}: {error}".splitlines()[0][:300]))
            continue
        signatures.setdefault(signature.digest, where)
    found = EvaluationSet(str(root), signatures, len(files) - len(skipped), tuple(skipped))
    if cached is not None:      # written whole, then renamed: a killed run leaves no half file
        write_atomic(cached, json.dumps({"signatures": found.signatures, "checked": found.checked,
                                         "skipped": [asdict(s) for s in found.skipped]}))
    return found


@contextlib.contextmanager
def _quiet_torch():
    """Warnings, log lines and the graphs torch.export prints to stdout when it fails, about
    evaluation files' own code (hundreds on a full checkout), say nothing about
    decontamination: a failure is recorded as a skip."""
    disabled = logging.root.manager.disable       # torch's loggers have handlers and levels of their own
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _cache_path(root: Path, paths: list[Path]) -> Path:
    """The cache file of these evaluation files as they are now, under the signature code (ours
    and torch's: the graphs its tracers give) as it is now."""
    code = [Path(m.__file__).read_text() for m in (agent.builtin.capture, agent.builtin.export, agent.builtin.ir,
                                                   agent.builtin.torch_call)] + [Path(__file__).read_text(),
                                                                                 torch.__version__]
    files = [(str(p.relative_to(root)), source_hash(p.read_text(errors="replace"))) for p in paths]
    folder = prepare_home() / "cache" / "kernelbench_signatures"
    folder.mkdir(exist_ok=True)
    return folder / f"{_digest((code, files))[:32]}.json"


def _read_cache(path: Path, root: Path) -> EvaluationSet:
    data = json.loads(path.read_text())
    return EvaluationSet(str(root), dict(data["signatures"]), int(data["checked"]),
                         tuple(Skipped(**s) for s in data["skipped"]))


def decontaminate(problems: Sequence[GeneratedProblem], kernelbench: str | Path | EvaluationSet) -> Decontamination:
    """(kept, dropped with reasons) against a checkout or an `evaluation_set` already computed.
    A generated problem that cannot be traced is the generator's bug: it raises."""
    found = kernelbench if isinstance(kernelbench, EvaluationSet) else evaluation_set(kernelbench)
    kept, dropped = [], []
    with tempfile.TemporaryDirectory(prefix="kp-generated-") as folder:
        for problem in problems:
            path = Path(folder) / f"{problem.name}.py"
            path.write_text(problem.source)
            signature = problem_signature(path)
            match = found.signatures.get(signature.digest)
            if match is None:
                kept.append(problem)
            else:
                dropped.append(Dropped(problem.name, problem.hash,
                                       f"same op graph and sizes as {match} ({signature.describe()})"))
    return Decontamination(found, tuple(kept), tuple(dropped))


def _digest(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()
