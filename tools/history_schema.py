"""The history store's tables, its schema version, and the upgrades from older versions.

`tools.history.HistoryStore` reads and writes these tables; `migrate(engine)` is what opening
a store runs first: it creates the tables of a new database (stamped with SCHEMA_VERSION), or
applies the upgrades an older one lacks, in order, in one transaction under a lock on the
version row (so one of several openers upgrades and the others find it done), and refuses a
database written by a newer kernelpilot. Openers racing on a new database retry until one has
created it. Run through the store (`HistoryStore(url)`); tests: tests/test_history_schema.py.
"""
from sqlalchemy import Engine, Float, ForeignKey, Index, Integer, String, Text, inspect, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from tools.history_errors import HistoryError

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ProblemRow(Base):
    __tablename__ = "problems"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    suite: Mapped[str] = mapped_column(String(128))
    level: Mapped[int | None] = mapped_column(Integer)
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(Text)


class CandidateRow(Base):
    __tablename__ = "candidates"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    problem_hash: Mapped[str] = mapped_column(ForeignKey("problems.hash"), index=True)
    source: Mapped[str] = mapped_column(Text)
    backend: Mapped[str] = mapped_column(String(16))
    parent_hash: Mapped[str | None] = mapped_column(String(64))


class EvaluationRow(Base):
    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_call", "session", "turn", "call_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_hash: Mapped[str] = mapped_column(ForeignKey("candidates.hash"), index=True)
    problem_hash: Mapped[str] = mapped_column(ForeignKey("problems.hash"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    flags: Mapped[str] = mapped_column(Text)            # JSON list of flag names
    reason: Mapped[str] = mapped_column(Text)
    max_abs_error: Mapped[float | None] = mapped_column(Float)
    rel_error: Mapped[float | None] = mapped_column(Float)
    runtime_ms: Mapped[float | None] = mapped_column(Float)
    eager_ms: Mapped[float | None] = mapped_column(Float)
    compile_ms: Mapped[float | None] = mapped_column(Float)
    speedup_vs_eager: Mapped[float | None] = mapped_column(Float)
    speedup_vs_compile: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(32))
    size: Mapped[str] = mapped_column(String(16))
    sandbox: Mapped[str] = mapped_column(String(16))
    versions: Mapped[str] = mapped_column(Text)         # JSON: torch, triton, python, cuda
    session: Mapped[str] = mapped_column(String(128), index=True)
    created: Mapped[str] = mapped_column(String(32))    # ISO 8601, UTC
    # The origin of this evaluation. None in rows from schema 1, which kept one origin per
    # candidate: the upgrade gives it to the candidate's first evaluation only.
    policy: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256))
    analysis: Mapped[str | None] = mapped_column(Text)
    turn: Mapped[int | None] = mapped_column(Integer)
    call_id: Mapped[str | None] = mapped_column(String(128))


class BaselineRow(Base):
    """Eager and torch.compile times of a problem on a device and software stack."""

    __tablename__ = "baselines"
    problem_hash: Mapped[str] = mapped_column(ForeignKey("problems.hash"), primary_key=True)
    size: Mapped[str] = mapped_column(String(16), primary_key=True)
    device: Mapped[str] = mapped_column(String(128), primary_key=True)
    torch_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    triton_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    eager_ms: Mapped[float | None] = mapped_column(Float)
    compile_ms: Mapped[float | None] = mapped_column(Float)


class SubmissionRow(Base):
    """The evaluation a session handed back as its answer (one per session)."""

    __tablename__ = "submissions"
    session: Mapped[str] = mapped_column(String(128), primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"))


def locked(error: BaseException) -> bool:
    """SQLite's "database is locked": another writer holds the file."""
    return isinstance(error, OperationalError) and "database is locked" in str(error)


class _SchemaInProgress(Exception):
    """Another process has created the tables but not yet written the schema version."""


def _schema_version(db: Session) -> int:
    stamp = db.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    if stamp is None:   # SQLite commits DDL on its own: the tables can appear before the row
        raise _SchemaInProgress()
    return int(stamp)


def _created_meanwhile(error: BaseException) -> bool:
    return (locked(error) or isinstance(error, (IntegrityError, _SchemaInProgress))
            or "already exists" in str(error))


# Workers opening a new database together: one creates the schema, the others find it on retry.
_retry_creation = retry(retry=retry_if_exception(_created_meanwhile), stop=stop_after_attempt(8),
                        wait=wait_exponential(multiplier=0.05, max=2.0), reraise=True)


def migrate(engine: Engine, where: str) -> None:
    """Create the schema of a new database or upgrade an older one to SCHEMA_VERSION;
    HistoryError for one written by a newer kernelpilot, or one whose tables never got
    their version (its creation was cut short: SQLite commits each CREATE TABLE at once)
    once the retries give another opener time to write it (`where` names the store)."""
    try:
        _create_or_upgrade(engine, where)
    except _SchemaInProgress:
        raise HistoryError(where, "it has the store's tables but no schema version (its creation was cut short?): "
                                  "move it away (or drop its tables) to start a new store", "open") from None


@_retry_creation
def _create_or_upgrade(engine: Engine, where: str) -> None:
    with Session(engine) as session, session.begin():
        if not inspect(session.connection()).has_table("meta"):
            Base.metadata.create_all(session.connection())
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            return
        version = _schema_version(session)
        if version < SCHEMA_VERSION:
            # Lock the version row first (it opens SQLite's write transaction, so the DDL below
            # is part of it): one opener upgrades, the others wait and find it done.
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value=Meta.value))
            version = _schema_version(session)
        if version > SCHEMA_VERSION:
            raise HistoryError(where, f"it has schema version {version}, newer than this kernelpilot's "
                                      f"{SCHEMA_VERSION}: upgrade kernelpilot", "open")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            UPGRADES[step](session.connection())
        if version < SCHEMA_VERSION:
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def _upgrade_to_2(db) -> None:
    """Schema 1 kept one origin per candidate (that of its first evaluation) and lost the
    others: the origin moves to the evaluations, given to each candidate's first one only."""
    added = {"policy": "VARCHAR(64)", "model": "VARCHAR(256)", "analysis": "TEXT", "turn": "INTEGER",
             "call_id": "VARCHAR(128)"}
    for column, kind in added.items():
        db.exec_driver_sql(f"ALTER TABLE evaluations ADD COLUMN {column} {kind}")
    moved = ("policy", "model", "analysis")
    db.exec_driver_sql(
        f"UPDATE evaluations SET ({', '.join(moved)}) = (SELECT {', '.join(moved)} FROM candidates "
        f"WHERE candidates.hash = evaluations.candidate_hash) "
        f"WHERE id IN (SELECT min(id) FROM evaluations GROUP BY candidate_hash)")
    for column in moved:
        db.exec_driver_sql(f"ALTER TABLE candidates DROP COLUMN {column}")
    next(i for i in EvaluationRow.__table__.indexes if i.name == "ix_evaluations_call").create(db)


# Upgrades from version N-1 to N, applied in order by `migrate` inside its transaction.
UPGRADES: dict = {2: _upgrade_to_2}
