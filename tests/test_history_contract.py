"""The history store's finer contracts, on a real SQLite file (issue 18: the gaps its mutation
run showed): where the default store lives and the one error when its folder cannot be made,
every field of an evaluation read back as it was recorded, the documented defaults of
`best`, `recent` and `stratified` and how `stratified` spreads its picks, `records`' source
only when asked, the SQLite settings each connection gets, and no password in an error.

    pytest -q tests/test_history_contract.py       # a few seconds; the fast selection of
                                                   # benchmarks/mutation.sh's `history` module
"""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.test_history import PROBLEM, make_result
from tools.history import HistoryError, HistoryStore, Origin, default_url
from tools.problems import load_problem
from tools.records import EvalStatus


@pytest.fixture
def store(tmp_path) -> HistoryStore:
    return HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")


@pytest.fixture
def problem():
    return load_problem(PROBLEM, size="small")


def record_speedups(store: HistoryStore, problem, speedups: list[float]) -> list[int]:
    return [store.record(problem, f"source {i}", make_result(speedup=s), Origin("builtin"), "s")
            for i, s in enumerate(speedups)]


# ---- where the default store lives ---------------------------------------------------------------

def test_the_default_store_is_named_by_the_environment(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("KERNELPILOT_DB_URL", url)
    assert default_url() == url
    assert HistoryStore().url == url


def test_the_default_store_is_history_db_in_a_home_made_with_its_parents(monkeypatch, tmp_path):
    home = tmp_path / "not" / "yet" / "home"
    monkeypatch.setenv("KERNELPILOT_HOME", str(home))
    assert default_url() == f"sqlite:///{home / 'history.db'}"
    assert home.is_dir()
    HistoryStore().record(load_problem(PROBLEM, size="small"), "x", make_result(), Origin("builtin"), "s")
    assert (home / "history.db").is_file()


def test_a_home_that_cannot_be_made_is_one_error_naming_the_store(monkeypatch, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv("KERNELPILOT_HOME", str(blocker / "home"))
    with pytest.raises(HistoryError) as raised:
        default_url()
    assert str(raised.value) == (f"cannot open the history store at {blocker / 'home' / 'history.db'}: "
                                 f"its folder cannot be made: Not a directory")
    assert raised.value.store == str(blocker / "home" / "history.db")


def test_an_error_names_the_server_without_its_password(tmp_path):
    with pytest.raises(HistoryError) as raised:
        HistoryStore(f"postgresql+psycopg://nobody:hunter2@/kp?host={tmp_path}&port=1")
    message = str(raised.value)
    assert message.startswith("cannot open the history store at postgresql+psycopg://nobody:***@/kp")
    assert "hunter2" not in message and raised.value.store.startswith("postgresql+psycopg://nobody:***@")


def test_a_file_that_is_not_a_database_is_named_in_the_error(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"not a database, not at all" * 100)
    with pytest.raises(HistoryError) as raised:
        HistoryStore(f"sqlite:///{path}")
    assert str(raised.value).startswith(f"cannot open the history store at {path}: ")
    assert raised.value.store == str(path)


# ---- what is stored is what is read back -----------------------------------------------------------

def test_every_field_of_an_evaluation_reads_back_as_recorded(store, problem):
    result = make_result(speedup=2.0, max_abs_error=1.5e-6, rel_error=2.5e-7, runtime_ms=0.25, eager_ms=0.5,
                         compile_ms=0.4, speedup_vs_compile=1.6, reason="why not", device="cpu")
    before = datetime.now(timezone.utc).replace(microsecond=0)
    evaluation = store.record(problem, "the source", result,
                              Origin("openai", "qwen", "## analysis", turn=7, call_id="call_9"), "s-17")
    record = store.records(ids=[evaluation])[0]
    assert (record.max_abs_error, record.rel_error, record.runtime_ms, record.eager_ms, record.compile_ms,
            record.speedup_vs_eager, record.speedup_vs_compile) == (1.5e-6, 2.5e-7, 0.25, 0.5, 0.4, 2.0, 1.6)
    assert (record.reason, record.session, record.turn, record.call_id, record.problem) == \
        ("why not", "s-17", 7, "call_9", "04_softmax_rows")
    created = datetime.fromisoformat(record.created)
    assert created.utcoffset() == timedelta(0) and before <= created <= datetime.now(timezone.utc)
    entry = store.entries(problem.hash)[0]
    assert (entry.id, entry.speedup_vs_eager, entry.speedup_vs_compile, entry.runtime_ms, entry.session,
            entry.created, entry.turn, entry.call_id, entry.analysis) == \
        (evaluation, 2.0, 1.6, 0.25, "s-17", record.created, 7, "call_9", "## analysis")


def test_records_carry_the_source_only_when_asked(store, problem):
    evaluation = store.record(problem, "the source", make_result(), Origin("builtin"), "s")
    assert store.records(ids=[evaluation])[0].source is None
    assert store.records(ids=[evaluation], with_source=True)[0].source == "the source"


def test_each_connection_gets_wal_a_busy_timeout_and_foreign_keys(store):
    with store.engine.connect() as connection:
        settings = [connection.execute(text(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "busy_timeout", "foreign_keys")]
    assert settings == ["wal", 5000, 1]


# ---- the read views' documented defaults and picks -----------------------------------------------

def test_best_recent_and_stratified_give_three_by_default(store, problem):
    record_speedups(store, problem, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert [e.speedup_vs_eager for e in store.best(problem.hash)] == [5.0, 4.0, 3.0]
    assert [e.speedup_vs_eager for e in store.recent(problem.hash)] == [5.0, 4.0, 3.0]    # newest first
    assert [e.speedup_vs_eager for e in store.stratified(problem.hash)] == [5.0, 3.0, 1.0]
    assert len(store.best(problem.hash, k=None)) == 5


def test_stratified_spreads_its_picks_over_the_whole_ranking(store, problem):
    record_speedups(store, problem, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    speeds = lambda k: [e.speedup_vs_eager for e in store.stratified(problem.hash, k=k)]
    assert speeds(1) == [6.0]                       # the fastest alone
    assert speeds(2) == [6.0, 1.0]                  # the fastest and the slowest of all, not of the best 3
    assert speeds(4) == [6.0, 4.0, 3.0, 1.0]        # ranks 0, round(5/3)=2, round(10/3)=3, 5
    assert speeds(6) == speeds(7) == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_stratified_counts_only_timed_correct_kernels(store, problem):
    record_speedups(store, problem, [1.0, 2.0])
    store.record(problem, "broken", make_result(EvalStatus.INCORRECT, speedup=9.0), Origin("builtin"), "s")
    store.record(problem, "untimed", make_result(), Origin("builtin"), "s")
    assert [e.speedup_vs_eager for e in store.stratified(problem.hash, k=3)] == [2.0, 1.0]
