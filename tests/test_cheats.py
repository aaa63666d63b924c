"""The cheat fixtures (tests/cheats/): every cheat gets its expected verdict, every honest
twin passes, and the evaluator and the machine are unharmed afterwards: no process left
running, no file planted outside the scratch directory, no network connection made.

Each fixture's header drives its test: `# expect: STATUS[|STATUS]`, `# reason: WORDS`
(in the verdict's reason) or, where several failing statuses are accepted (a static finding
on one device, a dynamic one on another), `# reason-STATUS: WORDS` for each; a `correct`
cheat names the flags that disqualify it. `# flags: a,b` (exactly these
policy flags), `# gpu-flags: c` (more flags on a GPU, where timings exist),
`# problem: NAME`, `# gpu-only: yes|no`. GPU-only ones run with `pytest -m gpu` on a GPU machine
(benchmarks/cheat_suite.py runs the whole set there and prints the table).
"""
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from benchmarks.cheat_suite import as_expected, expected_reasons
from tests.conftest import PROBLEMS, accepting, read
from tools.problems import load_problem
from tools.records import EvalResult, EvalStatus, Flag
from tools.sandbox import leftovers
from tools.sandbox.process import descendants

CHEATS = Path(__file__).resolve().parent / "cheats"
CHEAT_PORT = 47613   # the port written in cheat_network.py
ENVIRONMENT_FLAGS = {Flag.NETWORK_NOT_ISOLATED, Flag.FILESYSTEM_NOT_ISOLATED, Flag.SHARED_USER, Flag.TIMING_MISMATCH}


@dataclass(frozen=True)
class Fixture:
    name: str
    statuses: tuple[EvalStatus, ...]
    reasons: dict           # EvalStatus -> words its reason must contain, for each failing status
    flags: frozenset
    gpu_flags: frozenset
    problem: Path
    gpu_only: bool


def parse(path: Path) -> Fixture:
    fields = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, value = line[2:].split(":", 1)
            fields[key.strip()] = value.strip()
    problem = fields["problem"]
    folder = CHEATS.parent if problem.startswith("cheats/") else PROBLEMS
    return Fixture(path.stem, tuple(EvalStatus(s) for s in fields["expect"].split("|")), expected_reasons(fields),
                   frozenset(Flag(f) for f in fields.get("flags", "").split(",") if f),
                   frozenset(Flag(f) for f in fields.get("gpu-flags", "").split(",") if f), folder / f"{problem}.py",
                   fields["gpu-only"] == "yes")


FIXTURES = [parse(path) for path in sorted(CHEATS.glob("*.py"))]
CPU_FIXTURES = [f for f in FIXTURES if not f.gpu_only]


def sandbox_strays() -> list[int]:
    """Processes still running in one of this process's sandbox working directories that
    are not ours (a detached child that escaped its worker); other test runs' are theirs."""
    ours, found = set(descendants(os.getpid())), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in ours:
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if os.path.basename(cwd).startswith(leftovers.workdir_prefix()):
                found.append(int(entry))
    return found


def import_path_entries() -> set[tuple[str, str]]:
    """Names in every folder of the import path (where a planted torch.py would shadow torch)."""
    entries = set()
    for folder in {p for p in sys.path if p and os.path.isdir(p)}:
        entries |= {(folder, name) for name in os.listdir(folder) if name.endswith(".py")}
    return entries


@pytest.fixture(scope="module")
def listener():
    """A TCP server on a free port, counting connections made to it; fixtures that try
    the network are pointed at it (`CHEAT_PORT = ...` in their source is replaced)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    with accepting(server) as accepted:
        yield server.getsockname()[1], accepted


def check_verdict(result, fixture: Fixture, gpu: bool = False) -> None:
    assert result.status in fixture.statuses, f"{fixture.name}: {result.status.value}: {result.reason}"
    if result.status is not EvalStatus.CORRECT:
        assert fixture.reasons[result.status] in result.reason, f"{fixture.name}: {result.reason!r}"
    else:
        expected = fixture.flags | (fixture.gpu_flags if gpu else frozenset())
        assert set(result.flags) - ENVIRONMENT_FLAGS == set(expected), (fixture.name, result.flags)


def test_the_fixture_set_spans_the_issue():
    cheats = [f for f in FIXTURES if f.name.startswith("cheat_")]
    honest = [f for f in FIXTURES if f.name.startswith("honest_")]
    assert len(cheats) >= 24 and len(honest) >= 8
    assert all(f.statuses == (EvalStatus.CORRECT,) for f in honest)
    # a cheat may pass as correct only with a flag that keeps it from being used
    assert all(f.flags for f in cheats if EvalStatus.CORRECT in f.statuses)
    assert all(f.problem.is_file() for f in FIXTURES)


@pytest.mark.parametrize("fixture", CPU_FIXTURES, ids=[f.name for f in CPU_FIXTURES])
def test_cpu_fixture_gets_its_verdict_and_harms_nothing(evaluator, listener, fixture):
    port, accepted = listener
    source = read(CHEATS / f"{fixture.name}.py").replace(f"CHEAT_PORT = {CHEAT_PORT}", f"CHEAT_PORT = {port}")
    before = import_path_entries()
    result = evaluator.evaluate(load_problem(fixture.problem, size="small"), source)
    check_verdict(result, fixture)
    assert sandbox_strays() == [], "a process of the candidate outlived its worker"
    assert import_path_entries() - before == set(), "a file appeared in the import path"
    assert accepted == [], "the candidate reached a server on the host"


def test_the_sandbox_denies_writes_and_reads_outside_its_folder(evaluator, tmp_path, softmax_problem):
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    escaped = tmp_path / "escaped.txt"
    source = read(CHEATS / "honest_softmax.py") + f'''
SECRET, ESCAPE = {str(secret)!r}, {str(escaped)!r}
for target, mode in ((SECRET, "r"), (ESCAPE, "w")):
    try:
        open(target, mode).close()
    except PermissionError:
        continue
    raise RuntimeError(f"opened {{target}} for {{mode}}")
'''
    result = evaluator.evaluate(softmax_problem, source)
    assert result.status is EvalStatus.CORRECT, result.reason
    assert not escaped.exists() and Flag.FILESYSTEM_NOT_ISOLATED not in result.flags


def test_kernel_provenance_names_the_candidates_own_kernel(evaluator, softmax_problem):
    result = evaluator.evaluate(softmax_problem, read(CHEATS / "honest_softmax.py"))
    assert result.kernels and result.kernels[0].startswith("kp_candidate.softmax_kernel x")
    fallback = evaluator.evaluate(softmax_problem, read(CHEATS / "cheat_ghost_branch.py"))
    assert Flag.NO_CUSTOM_KERNEL in fallback.flags and not any("kp_candidate" in k for k in fallback.kernels)


GPU_FIXTURES = [f for f in FIXTURES]


@pytest.mark.gpu
@pytest.mark.parametrize("fixture", GPU_FIXTURES, ids=[f.name for f in GPU_FIXTURES])
def test_gpu_fixture_gets_its_verdict(gpu_cheat_evaluator, fixture):
    result = gpu_cheat_evaluator.evaluate(load_problem(fixture.problem), read(CHEATS / f"{fixture.name}.py"))
    check_verdict(result, fixture, gpu=True)
    assert sandbox_strays() == []


@pytest.fixture(scope="module")
def gpu_cheat_evaluator():
    from tools.device import detect, pick_index
    from tools.evaluator import EvalConfig, Evaluator
    from tools.sandbox.contracts import Limits
    from tools.sandbox.process import ProcessSandbox

    limits = Limits(load_s=120, first_call_s=120, call_s=30, timing_s=120)
    with ProcessSandbox(pick_index(), limits) as sandbox:   # before detect(): the fork server starts before CUDA
        yield Evaluator(sandbox, detect(), EvalConfig(limits=limits, baselines=False))


# ----------------------------------------------------------------------------- the timed loop's judgement

META = {"container": "tensor", "items": [{"type": "torch.Tensor", "device": "cpu", "dtype": "torch.float32",
                                          "shape": [2, 3], "shares_input_storage": False, "written": True}]}
CLEAN_AUDIT = {"tampered": [], "threads": [], "native_threads": 3, "children": [], "flags_changed": [],
               "launches": [], "l2_persisting_bytes": -1}


def timed_chunk(answers):
    """Two calls on two fresh sets in the order (1, 0); `answers[i]` is what call i left
    at the secret positions."""
    from tools.timing import Chunk

    refs = [torch.arange(6.0).view(2, 3), torch.arange(6.0).view(2, 3) * -1]
    positions = torch.tensor([0, 5])
    chunk = Chunk([1, 0], "tensor", [torch.empty(2, 3, device="meta")], [positions],
                  [[r.reshape(-1)[positions]] for r in refs])
    chunk.sample_outputs = [[refs[answer].reshape(-1)[positions]] for answer in answers]
    reply = {"kind": "timed", "event_ms": [1.0, 1.0], "wall_ms": [1.05, 1.05], "loop_wall_s": 0.01,
             "checked_meta": [], "flags_changed": [], "audit": CLEAN_AUDIT, "call_meta": [META, META]}
    return chunk, reply


def test_every_timed_call_is_checked_on_its_own_fresh_set():
    from tools.records import Phase
    from tools.sandbox.replies import ReplyKind, parse_reply
    from tools.timing import TimingConfig, judge_chunk as judge_wire

    def judge_chunk(reply, *args, **kwargs):   # the wire reply, parsed once as the trusted side does
        return judge_wire(parse_reply(reply, ReplyKind.TIMED, Phase.TIME), *args, **kwargs)

    config = TimingConfig(iters=2, checked_calls=0)
    chunk, reply = timed_chunk([1, 0])
    assert judge_chunk(reply, chunk, 0, config, 0.5, audited=True).status is EvalStatus.CORRECT
    replayed, reply = timed_chunk([1, 1])   # the second call replays the first call's output
    verdict = judge_chunk(reply, replayed, 0, config, 0.5, audited=True)
    assert verdict.status is EvalStatus.INCORRECT and "timed call 2 of 2 (secret sample" in verdict.reason
    chunk, reply = timed_chunk([1, 0])
    tampered = {**reply, "audit": {**CLEAN_AUDIT, "tampered": ["torch.cuda.synchronize (replaced)"]}}
    assert "timer tampering" in judge_chunk(tampered, chunk, 0, config, 0.5, audited=True).reason
    no_samples = {key: value for key, value in reply.items() if key != "call_meta"}
    assert judge_chunk(no_samples, chunk, 0, config, 0.5, audited=True).status is EvalStatus.REJECTED


def test_each_accepted_status_is_judged_by_its_own_reason():
    fields = {"expect": "rejected|incorrect", "reason-rejected": "rule input_cache",
              "reason-incorrect": "elements outside atol"}
    rejected = EvalResult.model_construct(status=EvalStatus.REJECTED, reason="static check: ... rule input_cache", flags=[])
    incorrect = EvalResult.model_construct(status=EvalStatus.INCORRECT, reason="output: 3/9 elements outside atol=1e-4",
                                           flags=[])
    assert as_expected(rejected, fields, gpu=False) and as_expected(incorrect, fields, gpu=False)
    for result, other in ((rejected, incorrect), (incorrect, rejected)):      # the other status's words do not do
        swapped = result.model_construct(status=result.status, reason=other.reason, flags=[])
        assert not as_expected(swapped, fields, gpu=False)
    with pytest.raises(ValueError, match="names no reason for rejected, incorrect"):
        expected_reasons({"expect": "rejected|incorrect", "reason": "static check"})
