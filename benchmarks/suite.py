"""Our suite as (problem, honest candidate) pairs, for the runners in this folder."""
import fnmatch
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROBLEMS, CANDIDATES = HERE / "problems", HERE / "candidates"


@dataclass(frozen=True)
class Pair:
    name: str
    problem: Path
    candidate: Path


def suite_pairs(pattern: str = "*") -> list[Pair]:
    """Every suite problem whose name matches one of the comma-separated globs in
    `pattern`, with its candidate."""
    globs = pattern.split(",")
    pairs = [Pair(p.stem, p, CANDIDATES / p.name) for p in sorted(PROBLEMS.glob("*.py"))
             if any(fnmatch.fnmatch(p.stem, glob) for glob in globs)]
    if not pairs:
        raise FileNotFoundError(f"no suite problem matches {pattern!r}")
    missing = [pair.name for pair in pairs if not pair.candidate.is_file()]
    if missing:
        raise FileNotFoundError(f"no honest candidate for: {', '.join(missing)}")
    return pairs
