"""The history store's schema upgrades, on databases written by an older kernelpilot: a
schema-1 SQLite file (tests/fixtures/history_v1.sqlite.sql, dumped from a store the old code
wrote) and the same store on a real PostgreSQL server. They open, keep every evaluation, and
record new evaluations with their own origin. Then openers racing on a new database: which
errors mean another writer or opener got there first, an opener waiting for the version
another is writing, and tables that never got their version (one clear error)."""
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.test_history import PROBLEM, make_result
from tools.history import HistoryError, HistoryStore, Origin
from tools.history_schema import SCHEMA_VERSION, Base, Meta, _created_meanwhile, _SchemaInProgress, locked
from tools.problems import load_problem

FIXTURES = Path(__file__).parent / "fixtures"


def load_schema_1(store_url: str, dialect: str) -> None:
    engine = create_engine(store_url)
    script = (FIXTURES / f"history_v1.{dialect}.sql").read_text()
    with engine.begin() as connection:
        if dialect == "sqlite":
            connection.connection.driver_connection.executescript(script)
        else:
            connection.exec_driver_sql(script)
    engine.dispose()


def check_upgraded(store: HistoryStore) -> None:
    old = sorted(store.records(with_source=True), key=lambda r: r.id)
    # What schema 1 kept survives; the origin it had lost (the second evaluation's) stays unknown.
    assert [(r.source, r.session, r.policy, r.model, r.analysis) for r in old] == [
        ("kept source", "old-1", "builtin", "builtin-0.1", "first analysis"),
        ("kept source", "old-2", None, None, None),
        ("other source", "old-2", "openai", "qwen", "other analysis")]
    assert store.submission("old-2") == old[2].id
    assert [b.eager_ms for b in store.baselines(old[0].problem_hash)] == [1.5]
    problem = load_problem(PROBLEM, size="small")
    new = store.record(problem, "kept source", make_result(speedup=1.7),
                       Origin("openai", "qwen", "new analysis", turn=2, call_id="call_2"), "new-1")
    assert new > old[-1].id
    record = store.records(ids=[new])[0]
    assert (record.policy, record.analysis, record.turn, record.call_id) == ("openai", "new analysis", 2, "call_2")
    assert [e.analysis for e in store.entries(problem.hash)] == ["first analysis", None, "other analysis",
                                                                  "new analysis"]
    with Session(store.engine) as db:
        assert db.get(Meta, "schema_version").value == str(SCHEMA_VERSION) == "2"
        assert {"policy", "analysis"}.isdisjoint(c["name"] for c in inspect(db.connection()).get_columns("candidates"))


def test_a_schema_1_sqlite_file_opens_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    load_schema_1(url, "sqlite")
    check_upgraded(HistoryStore(url))
    assert HistoryStore(url).count() == 4       # opening it again finds nothing to upgrade


def test_a_schema_1_postgres_database_opens_upgraded(postgres_url):
    load_schema_1(postgres_url, "postgresql")
    check_upgraded(HistoryStore(postgres_url))


# ---- openers racing on a new database ----------------------------------------------------------

def real_errors(tmp_path) -> dict[str, Exception]:
    """SQLAlchemy's errors as SQLite raises them: a write while another connection holds the
    database (no busy wait), a table created twice, a duplicate key, a missing table."""
    url = f"sqlite:///{tmp_path / 'raw.db'}"
    engine = create_engine(url, connect_args={"timeout": 0})
    caught = {}
    with engine.connect() as setup:
        setup.exec_driver_sql("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        setup.exec_driver_sql("INSERT INTO t VALUES (1)")
        setup.commit()
    for name, statement in (("exists", "CREATE TABLE t (k INTEGER)"), ("duplicate", "INSERT INTO t VALUES (1)"),
                            ("missing", "SELECT * FROM nowhere")):
        with engine.connect() as connection:
            with pytest.raises(Exception) as raised:
                connection.exec_driver_sql(statement)
            caught[name] = raised.value
    with engine.connect() as holder, engine.connect() as writer:
        holder.exec_driver_sql("BEGIN EXCLUSIVE")
        with pytest.raises(OperationalError) as raised:
            writer.exec_driver_sql("INSERT INTO t VALUES (2)")
        caught["locked"] = raised.value
        holder.rollback()
    engine.dispose()
    return caught


def test_which_errors_mean_another_writer_or_opener_got_there_first(tmp_path):
    errors = real_errors(tmp_path)
    assert "database is locked" in str(errors["locked"])
    assert {name: locked(error) for name, error in errors.items()} == \
        {"locked": True, "exists": False, "duplicate": False, "missing": False}
    assert {name: _created_meanwhile(error) for name, error in errors.items()} == \
        {"locked": True, "exists": True, "duplicate": True, "missing": False}
    assert not locked(RuntimeError("database is locked"))       # the words alone are not SQLite's error
    assert _created_meanwhile(_SchemaInProgress()) and not _created_meanwhile(RuntimeError("x"))


def tables_without_a_version(url: str) -> None:
    """What an opener killed between creating the tables and stamping their version leaves."""
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()


def test_an_opener_waits_for_the_version_another_is_writing(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    tables_without_a_version(url)

    def stamp_soon():
        time.sleep(0.3)
        with Session(create_engine(url)) as db, db.begin():
            db.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))

    writer = threading.Thread(target=stamp_soon)
    writer.start()
    store = HistoryStore(url)            # retries while the version is missing, then opens
    writer.join()
    assert store.count() == 0


@pytest.mark.slow
def test_tables_that_never_got_their_version_are_one_clear_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    tables_without_a_version(url)
    with pytest.raises(HistoryError) as raised:
        HistoryStore(url)               # about 5 s of retries first
    assert str(raised.value) == (f"cannot open the history store at {tmp_path / 'history.db'}: it has the store's "
                                 f"tables but no schema version (its creation was cut short?): move it away (or drop "
                                 f"its tables) to start a new store")
