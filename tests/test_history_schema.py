"""The history store's schema upgrades, on databases written by an older kernelpilot: a
schema-1 SQLite file (tests/fixtures/history_v1.sqlite.sql, dumped from a store the old code
wrote) and the same store on a real PostgreSQL server. They open, keep every evaluation, and
record new evaluations with their own origin."""
from pathlib import Path

from sqlalchemy import create_engine, inspect
from sqlalchemy.orm import Session

from tests.test_history import PROBLEM, make_result
from tools.history import HistoryStore, Origin
from tools.history_schema import SCHEMA_VERSION, Meta
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
