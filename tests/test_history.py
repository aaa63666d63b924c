"""The history store against a real SQLite file and a real PostgreSQL server: records
read back, the best first, concurrent writers lose nothing, a crash mid-write leaves
no half record, and the schema version guards against newer databases."""
import multiprocessing
import os
import signal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import PROBLEMS
from tools.history import HistoryError, HistoryStore, Origin
from tools.history_schema import SCHEMA_VERSION, Meta, ProblemRow
from tools.problems import load_problem
from tools.records import EvalResult, EvalStatus, Flag, Mode

PROBLEM = PROBLEMS / "04_softmax_rows.py"


def make_result(status=EvalStatus.CORRECT, speedup=None, **fields) -> EvalResult:
    runtime = None if speedup is None else 1.0
    base = dict(status=status, flags=[], reason="", phase=None, max_abs_error=1e-7, rel_error=1e-7, trials_run=5,
                trials_passed=5, runtime_ms=runtime, timing=None, eager_ms=speedup, compile_ms=None,
                speedup_vs_eager=speedup, speedup_vs_compile=None, device="cpu", mode=Mode.CPU_INTERPRETER,
                size="small", problem="04_softmax_rows", problem_hash="", candidate_hash="", sandbox="process",
                network_isolated=True, versions={"torch": "2.13.0"}, lint_findings=[], notes=[], log="", seconds=1.0)
    return EvalResult(**{**base, **fields})


def exercise(store: HistoryStore) -> None:
    problem = load_problem(PROBLEM, size="small")
    slow = store.record(problem, "slow source", make_result(speedup=1.2), Origin("builtin", analysis="naive"), "s1")
    fast = store.record(problem, "fast source", make_result(speedup=3.5, flags=[Flag.TIMING_MISMATCH]),
                        Origin("openai", model="m", analysis="fused"), "s1", parent_hash="slow")
    store.record(problem, "fast source", make_result(speedup=3.1), Origin("openai"), "s2")
    store.record(problem, "broken", make_result(EvalStatus.COMPILE_ERROR, reason="SyntaxError"), Origin("builtin"), "s2")
    entries = store.entries(problem.hash)
    assert [e.status for e in entries] == [EvalStatus.CORRECT] * 3 + [EvalStatus.COMPILE_ERROR]
    assert entries[1].flags == ["timing_mismatch"] and entries[1].analysis == "fused"
    assert [e.speedup_vs_eager for e in store.best(problem.hash, k=2)] == [3.5, 3.1]
    assert store.best(problem.hash, k=1)[0].id == fast != slow
    assert store.source(entries[1].candidate_hash) == "fast source"
    assert [e.speedup_vs_eager for e in store.stratified(problem.hash, k=2)] == [3.5, 1.2]   # fastest and slowest
    assert [e.status for e in store.recent(problem.hash, k=1)] == [EvalStatus.COMPILE_ERROR]
    baselines = store.baselines(problem.hash)   # one row per (problem, size, device, versions)
    assert [(b.size, b.device, b.torch_version, b.eager_ms) for b in baselines] == [("small", "cpu", "2.13.0", 1.2)]
    neighbour = load_problem(PROBLEMS / "05_log_softmax_rows.py", size="small")   # same category: softmax
    store.record(neighbour, "neighbour source", make_result(speedup=2.0), Origin("builtin"), "s3")
    assert [(name, e.speedup_vs_eager) for name, e in store.similar_best("softmax", problem.hash)] == [
        ("05_log_softmax_rows", 2.0)]
    with Session(store.engine) as db:
        assert db.query(ProblemRow).count() == 2            # one row per problem, however many evaluations
        assert db.get(Meta, "schema_version").value == str(SCHEMA_VERSION)


def write_many(url: str, worker: int, count: int) -> None:
    store = HistoryStore(url)
    problem = load_problem(PROBLEM, size="small")
    for i in range(count):
        store.record(problem, f"candidate {worker}-{i}", make_result(speedup=1.0 + i), Origin("builtin"), f"w{worker}")


def concurrent_writers(url: str, workers: int = 4, count: int = 25) -> None:
    # no store opened here first: the workers race to create the schema too
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=write_many, args=(url, w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    assert HistoryStore(url).count() == workers * count


def die_mid_write(url: str) -> None:
    store = HistoryStore(url)
    problem = load_problem(PROBLEM, size="small")
    for i in range(5):
        store.record(problem, f"kept {i}", make_result(speedup=2.0), Origin("builtin"), "crash")
    with Session(store.engine) as db:
        db.begin()
        db.add(ProblemRow(hash="half-written", name="x", suite="x", level=None, category=None, source=""))
        db.flush()
        os.kill(os.getpid(), signal.SIGKILL)   # dies inside the open transaction


def test_sqlite_records_and_reads_back(tmp_path):
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    exercise(store)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_sqlite_concurrent_writers_lose_nothing(tmp_path):
    concurrent_writers(f"sqlite:///{tmp_path / 'history.db'}")


def test_a_crash_mid_write_keeps_what_was_committed_and_nothing_else(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    process = multiprocessing.get_context("spawn").Process(target=die_mid_write, args=(url,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    store = HistoryStore(url)
    assert store.count() == 5
    with Session(store.engine) as db:
        assert db.get(ProblemRow, "half-written") is None


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = HistoryStore(url)
    with Session(store.engine) as db, db.begin():
        db.get(Meta, "schema_version").value = str(SCHEMA_VERSION + 1)
    with pytest.raises(HistoryError) as raised:
        HistoryStore(url)
    assert str(raised.value) == (f"cannot open the history store at {tmp_path / 'history.db'}: it has schema version "
                                 f"{SCHEMA_VERSION + 1}, newer than this kernelpilot's {SCHEMA_VERSION}: upgrade kernelpilot")


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(HistoryError, match="cannot open the history store"):
        HistoryStore(f"postgresql+psycopg://nobody@/kp?host={tmp_path}&port=1")


# ------------------------------------------------------------------ PostgreSQL

def test_postgres_records_and_reads_back(postgres_url):   # a schema of its own (tests/conftest.py)
    exercise(HistoryStore(postgres_url))


def test_postgres_concurrent_writers_lose_nothing(postgres_url):
    concurrent_writers(postgres_url)


def test_each_evaluation_keeps_its_own_analysis_and_origin(tmp_path):
    """The same source evaluated again (another turn, session or policy) is stored with the
    analysis and origin of that evaluation, not those of the source's first one."""
    store = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    problem = load_problem(PROBLEM, size="small")
    first = store.record(problem, "same source", make_result(speedup=1.5),
                         Origin("builtin", "builtin-0.1", "first analysis", turn=1, call_id="call_1"), "s1")
    again = store.record(problem, "same source", make_result(speedup=1.6),
                         Origin("openai", "qwen", "second analysis", turn=4, call_id="call_x"), "s2")
    assert [e.analysis for e in store.entries(problem.hash)] == ["first analysis", "second analysis"]
    origins = {r.id: (r.policy, r.model, r.analysis, r.session, r.turn, r.call_id) for r in store.records()}
    assert origins == {first: ("builtin", "builtin-0.1", "first analysis", "s1", 1, "call_1"),
                       again: ("openai", "qwen", "second analysis", "s2", 4, "call_x")}


def test_a_test_records_into_a_store_of_its_own():
    HistoryStore().record(load_problem(PROBLEM, size="small"), "mine", make_result(), Origin("builtin"), "own")
    assert HistoryStore().count() == 1


def test_the_next_test_finds_its_own_store_empty():   # runs after the one above: no shared store (conftest.py)
    assert HistoryStore().count() == 0
