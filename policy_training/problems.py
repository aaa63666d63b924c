"""Problems to train on: a seeded generator of KernelBench-format problems, decontaminated
against KernelBench and split by problem hash.

KernelBench is the evaluation set, so training draws its own problems: random but
well-formed compositions from six families (families.py: elementwise chains, row
reductions, norms, softmax variants, GEMM and conv epilogues), random sizes, fp32 unless
other dtypes are asked for. Problem i of seed s is drawn from its own `random.Random`
seeded with the string "s:i", so the same seed gives byte-identical sources (CPython's
string seeding and choice() are stable across versions and machines; a test pins seed 0) and `generate(s, n)` is a prefix of `generate(s, n + k)`. Each is named
`gen_<family>_<hash8>`, its hash the loader's (`tools.problems.source_hash`). The split
is a function of the hash alone, so a problem stays on its side whatever run draws it.

    python -m policy_training.problems --out train_problems --seed 0 --count 500 --kernelbench ~/KernelBench

writes one `<name>.py` a problem and `manifest.json` (seed, count, versions, every
problem's name, hash, family, dtype and split, and what decontamination dropped and
skipped); a training run records the manifest it read and the split it used
(`read_split`). GENERATOR_VERSION changes whenever a seed's output does.
"""
import argparse
import hashlib
import itertools
import json
import random
import sys
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path

from policy_training.decontaminate import Decontamination, EvaluationSet, decontaminate, evaluation_set
from policy_training.drafts import DType, Family, GeneratedProblem, render
from policy_training.families import BUILDERS, FP32_ONLY
from tools.device import versions
from tools.problems import ProblemError, source_hash
from tools.version import own_version

GENERATOR_VERSION = 1
MANIFEST = "manifest.json"


class Split(StrEnum):
    TRAIN = "train"
    HELD_OUT = "held_out"


def generate(seed: int, count: int, families: Sequence[Family] = tuple(Family),
             dtypes: Sequence[DType] = (DType.FP32,)) -> list[GeneratedProblem]:
    """`count` distinct problems, the families taken in turn, each dtype drawn from `dtypes`."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    return list(itertools.islice(stream(seed, families, dtypes), count))


def stream(seed: int, families: Sequence[Family] = tuple(Family),
           dtypes: Sequence[DType] = (DType.FP32,)) -> Iterator[GeneratedProblem]:
    """The endless sequence `generate` takes its prefix of; a repeated source is skipped."""
    if not families or not dtypes:
        raise ValueError("at least one family and one dtype are needed")
    seen: set[str] = set()
    for index in itertools.count():
        rng = random.Random(f"{seed}:{index}")
        family = families[index % len(families)]
        dtype = DType.FP32 if family in FP32_ONLY else rng.choice(tuple(dtypes))
        draft = BUILDERS[family](rng, dtype)
        source = render(draft)
        digest = source_hash(source)
        if digest in seen:
            continue
        seen.add(digest)
        yield GeneratedProblem(f"gen_{family.value}_{digest[:8]}", source, family, dtype, digest, draft.output)


def split_of(problem_hash: str, held_out_fraction: float = 0.1) -> Split:
    """HELD_OUT for about `held_out_fraction` of hashes (in steps of 0.001), decided by the hash alone."""
    if not 0.0 <= held_out_fraction <= 1.0:
        raise ValueError(f"held_out_fraction must be within [0, 1], not {held_out_fraction}")
    bucket = int(problem_hash[:8], 16) % 1000
    return Split.HELD_OUT if bucket < round(held_out_fraction * 1000) else Split.TRAIN


def clean_problems(seed: int, count: int, families: Sequence[Family], dtypes: Sequence[DType],
                   found: EvaluationSet | None) -> tuple[list[GeneratedProblem], Decontamination | None, int]:
    """`count` problems none of which is in `found`: (problems, what decontamination did, how
    many were drawn). Dropped problems are replaced by the next ones of the same stream."""
    problems = stream(seed, families, dtypes)
    if found is None:
        return list(itertools.islice(problems, count)), None, count
    kept, dropped, drawn = [], [], 0
    while len(kept) < count:
        if drawn > 10 * count + 100:
            raise RuntimeError(f"{len(dropped)} of {drawn} generated problems are in KernelBench: the generator is broken")
        batch = list(itertools.islice(problems, count - len(kept)))
        drawn += len(batch)
        result = decontaminate(batch, found)
        kept += result.kept
        dropped += result.dropped
    return kept, Decontamination(found, tuple(kept), tuple(dropped)), drawn


def manifest(problems: Sequence[GeneratedProblem], seed: int, count: int, drawn: int, families: Sequence[Family],
             dtypes: Sequence[DType], held_out: float, result: Decontamination | None) -> dict:
    rows = [{"name": p.name, "file": f"{p.name}.py", "hash": p.hash, "family": p.family.value, "dtype": p.dtype.value,
             "split": split_of(p.hash, held_out).value} for p in problems]
    found = result.evaluation if result else None
    return {
        "generator": {"module": "policy_training.problems", "version": GENERATOR_VERSION, "seed": seed, "count": count,
                      "drawn": drawn, "families": [f.value for f in families], "dtypes": [d.value for d in dtypes]},
        "versions": {**versions(), "kernelpilot": own_version()},
        "split": {"held_out_fraction": held_out, "rule": "int(hash[:8], 16) % 1000 < round(held_out_fraction * 1000)",
                  "counts": {s.value: sum(r["split"] == s.value for r in rows) for s in Split}},
        "decontamination": {
            "kernelbench": found.root if found else None, "checked": found.checked if found else 0,
            "skipped": [{"path": s.path, "reason": s.reason} for s in found.skipped] if found else [],
            "dropped": [{"name": d.name, "hash": d.hash, "reason": d.reason} for d in result.dropped] if result else []},
        "problems": rows,
    }


def write_problems(out: Path, problems: Sequence[GeneratedProblem], record: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for problem in problems:
        (out / f"{problem.name}.py").write_text(problem.source)
    path = out / MANIFEST
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read_split(manifest_path: str | Path, split: Split) -> list[Path]:
    """The files of one split of a written problem set, in manifest order; a run records the
    manifest's path, its sha256 (`manifest_digest`) and the split it trained or evaluated on."""
    path = Path(manifest_path)
    rows = json.loads(path.read_text())["problems"]
    return [path.parent / row["file"] for row in rows if row["split"] == split.value]


def manifest_digest(manifest_path: str | Path) -> str:
    return hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest()


# ------------------------------------------------------------------ the command line

def _names(kind: type[StrEnum]):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}': choose from {', '.join(k.value for k in kind)}") from None
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m policy_training.problems", description=(
        "Write COUNT generated KernelBench-format training problems (seeded: the same seed gives the same files) "
        "and manifest.json into OUT. With --kernelbench, problems with the op graph and sizes of a KernelBench "
        "level 1-3 problem are dropped and replaced. Each problem's split (train or held_out) follows from its hash."))
    p.add_argument("--out", type=Path, required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--seed", type=int, required=True, help="generator seed (any integer)")
    p.add_argument("--count", type=int, required=True, help="how many problems to write (1 or more)")
    p.add_argument("--kernelbench", type=Path, help="a KernelBench checkout to decontaminate against (its root)")
    p.add_argument("--held-out", type=float, default=0.1, help="share of problems held out, by hash (default 0.1)")
    p.add_argument("--families", type=_names(Family), default=tuple(Family),
                   help=f"comma-separated, default all: {','.join(f.value for f in Family)}")
    p.add_argument("--dtypes", type=_names(DType), default=(DType.FP32,),
                   help="comma-separated dtypes to draw from (reductions stay fp32): float32 (default), float16, bfloat16")
    return p


def _check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, in one line, or None."""
    if args.count < 1:
        return f"--count must be 1 or more, not {args.count}"
    if not 0.0 <= args.held_out < 1.0:
        return f"--held-out must be within [0, 1), not {args.held_out}"
    if not args.families or not args.dtypes:
        return "--families and --dtypes need at least one name each"
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        return f"--out {args.out} exists and is not an empty folder"
    if args.kernelbench is not None and not args.kernelbench.expanduser().is_dir():
        return f"--kernelbench {args.kernelbench}: no such folder"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = _check(args)
    try:
        found = evaluation_set(args.kernelbench, log=lambda line: print(line, file=sys.stderr)) \
            if problem is None and args.kernelbench is not None else None
    except ProblemError as error:
        problem = str(error)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    problems, result, drawn = clean_problems(args.seed, args.count, args.families, args.dtypes, found)
    record = manifest(problems, args.seed, args.count, drawn, args.families, args.dtypes, args.held_out, result)
    path = write_problems(args.out, problems, record)
    counts = record["split"]["counts"]
    checked = (f"; {len(result.dropped)} dropped as KernelBench duplicates ({found.checked} checked, "
               f"{len(found.skipped)} skipped)") if result else "; not decontaminated (no --kernelbench)"
    print(f"wrote {len(problems)} problems to {args.out} ({counts['train']} train, {counts['held_out']} held out"
          f"{checked}): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
