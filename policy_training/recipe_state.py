"""A recipe run's STATE folder (policy_training/recipe.py) as one archive a commit can carry from
one session to the next: a lent GPU machine starts bare, and so does each session's checkout, so
a run that takes several leases lives in the repository between them (benchmarks/recipe/state.tgz).

What it leaves out: the models (a stage's OUT/model, rebuilt models, trainer checkpoints: the
adapters it keeps rebuild them on arrival), and what is not ours to publish: the KernelBench files
of the held-out set (`unpack` copies them back from the user's checkout and checks their hashes)
and the held-out evaluations' stores and transcripts, which quote those problems (their bench rows,
results.jsonl, stay: the report reads them).

    python -m policy_training.recipe pack --state .recipe/smollm2 --out benchmarks/recipe/state.tgz
    python -m policy_training.recipe unpack --archive benchmarks/recipe/state.tgz --state .recipe/smollm2 \
        --kernelbench ~/KernelBench
"""
import tarfile
from pathlib import Path, PurePosixPath

MODELS = ("model", "rebuilt", "trainer")


def kept(relative: PurePosixPath) -> bool:
    """Is this path (relative to STATE) in the archive?"""
    parts = relative.parts
    if any(part in MODELS for part in parts[1:]):          # a stage's models, never STATE/<name> itself
        return False
    if parts[0] == "heldout" and len(parts) > 1 and parts[1].startswith("kb_"):
        return False
    if parts[0] == "eval":
        return relative.name == "results.jsonl"
    return True


def pack(state: Path, archive: Path) -> int:
    """STATE's kept files, sorted, into `archive` (written whole, then renamed); how many."""
    files = sorted(p for p in state.rglob("*") if p.is_file() and kept(PurePosixPath(p.relative_to(state).as_posix())))
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(state).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    partial.replace(archive)
    return len(files)


def extract(archive: Path, state: Path) -> int:
    """The archive into a new STATE folder (refused where one exists); how many files. Members that
    would land outside STATE, links and devices are refused by tarfile's data filter."""
    if state.exists() and any(state.iterdir()):
        raise FileExistsError(f"{state} exists and is not empty: unpack into a new folder")
    state.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        tar.extractall(state, filter="data")
    return sum(m.isfile() for m in members)
