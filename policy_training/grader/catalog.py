"""Problems the grader knows by id, so that a trainer can POST `problem_id` instead of a source.

    catalog = Catalog.of([Path("~/KernelBench"), Path("benchmarks/problems")], levels=frozenset({1, 2}))
    catalog.source("L2/1_Conv2D_ReLU_BiasAdd")     # also the file stem alone when it is unique,
    catalog.source("3f9c2a1b7d4e")                 # or its content hash (12 hex digits at least)

The id of a problem is bench's key (agent/bench/runner.py `problem_key`: `L<level>/<stem>` for
a KernelBench file, the stem otherwise); its content hash (tools/problems.py `source_hash`, the
history store's) names it too. The sources are read once, when the service starts.
"""
from dataclasses import dataclass
from pathlib import Path

from agent.bench.runner import problem_key, select_files
from tools.problems import ProblemError, source_hash

MIN_HASH_CHARS = 12


class UnknownProblem(ProblemError):
    """No problem of the catalog has this id."""


@dataclass(frozen=True)
class Known:
    id: str
    hash: str
    level: int | None
    source: str


class Catalog:
    def __init__(self, known: list[Known]):
        self.known = known
        self._by_id = {k.id: k for k in known}
        stems: dict[str, list[Known]] = {}
        for k in known:
            stems.setdefault(k.id.rsplit("/", 1)[-1], []).append(k)
        self._by_stem = {stem: ks[0] for stem, ks in stems.items() if len(ks) == 1}

    @staticmethod
    def of(sources: list[Path], levels: frozenset[int] = frozenset()) -> "Catalog":
        """Every problem file of `sources` (files, folders, KernelBench checkouts); a source with none fails."""
        known = []
        for source in sources:
            files = select_files((source,), levels, ("*",))
            if not files:
                raise ProblemError(f"{source}: no problem files found" + (f" in levels {sorted(levels)}" if levels else ""))
            for f in files:
                text = f.path.read_text()
                known.append(Known(problem_key(f), source_hash(text), f.level, text))
        return Catalog(known)

    def source(self, problem_id: str) -> str:
        """The source of the problem `problem_id` names: its id, its unique stem, or a hash prefix."""
        found = self._by_id.get(problem_id) or self._by_stem.get(problem_id) or self._by_hash(problem_id.lower())
        if found is None:
            raise UnknownProblem(f"unknown problem_id '{problem_id[:80]}': GET /v1/problems lists the "
                                 f"{len(self.known)} this grader knows")
        return found.source

    def _by_hash(self, prefix: str) -> Known | None:
        if len(prefix) < MIN_HASH_CHARS or any(c not in "0123456789abcdef" for c in prefix):
            return None
        matches = [k for k in self.known if k.hash.startswith(prefix)]
        return matches[0] if len(matches) == 1 else None
