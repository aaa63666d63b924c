"""The speedup-history store: every evaluation, with its problem and candidate, kept.

SQLAlchemy 2 over SQLite by default (`$KERNELPILOT_HOME/history.db`, WAL mode, retried
on "database is locked"), or any SQLAlchemy URL from the caller or
`KERNELPILOT_DB_URL` (PostgreSQL for a team or an RL cluster). Each write is one
transaction, so a crash loses nothing already committed and leaves no half record.
A candidate (a source, by its hash) is stored once; each evaluation of it keeps its own
origin: the policy, model and analysis that produced it, its session, and the turn and
tool call id within the session (so a resumed run can find the calls it already made).
The schema carries a version; opening a database applies the upgrades it lacks (in one
transaction, under a lock on the version row) and refuses one written by a newer kernelpilot
(the tables and the upgrades: tools/history_schema.py).
Concurrent writers may add the same problem or candidate at once: those rows are inserted
with ON CONFLICT DO NOTHING.

    store = HistoryStore()                       # or HistoryStore("postgresql+psycopg://...")
    evaluation_id = store.record(problem, source, result, Origin(policy="builtin", turn=1), session="s1")
    store.best(problem.hash, k=3)
"""
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from sqlalchemy import event, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from tools.history_errors import HistoryError, engine_for, loud, without_password
from tools.history_schema import BaselineRow, CandidateRow, EvaluationRow, ProblemRow, SubmissionRow, locked, migrate
from tools.home import kernelpilot_home
from tools.records import EvalResult, EvalStatus

if TYPE_CHECKING:     # tools/problems.py imports torch; reading the store (`kernelpilot history`) needs none
    from tools.problems import Problem

INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@dataclass(frozen=True)
class Origin:
    """Where an evaluation came from: the policy, the model behind it, the analysis that
    produced the candidate, and the turn and tool call of the session that asked for it."""

    policy: str
    model: str | None = None
    analysis: str | None = None
    turn: int | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class Entry:
    """One evaluation as the agent and the trainer read it back."""

    id: int
    candidate_hash: str
    status: EvalStatus
    flags: list[str]
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    runtime_ms: float | None
    analysis: str | None
    session: str
    created: str
    turn: int | None = None
    call_id: str | None = None


class EvaluationRecord(BaseModel):
    """One stored evaluation in full, as `kernelpilot history show/export` print it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)
    id: int
    problem: str
    problem_hash: str
    candidate_hash: str
    status: EvalStatus
    flags: list[str]
    reason: str
    runtime_ms: float | None
    eager_ms: float | None
    compile_ms: float | None
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    max_abs_error: float | None
    rel_error: float | None
    device: str
    mode: str
    size: str
    sandbox: str
    versions: dict[str, str]
    session: str
    created: str
    policy: str | None          # None: an evaluation from schema 1 that was not its candidate's first
    model: str | None
    analysis: str | None
    turn: int | None
    call_id: str | None
    source: str | None = None


def default_url() -> str:
    if os.environ.get("KERNELPILOT_DB_URL"):
        return os.environ["KERNELPILOT_DB_URL"]
    home = kernelpilot_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HistoryError(str(home / "history.db"), f"its folder cannot be made: {error.strerror}", "open") from error
    return f"sqlite:///{home / 'history.db'}"


# SQLite allows one writer at a time: a batch worker that finds the file locked waits and retries.
_retry_locked = retry(retry=retry_if_exception(locked), stop=stop_after_attempt(8),
                      wait=wait_exponential(multiplier=0.05, max=2.0), reraise=True)


class HistoryStore:
    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        self.where = without_password(self.url)
        self.engine = engine_for(self.url, INSERTS)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()

    @loud("open")
    def _migrate(self) -> None:
        migrate(self.engine, self.where)

    @loud("record in")
    @_retry_locked
    def record(self, problem: "Problem", source: str, result: EvalResult, origin: Origin, session: str,
               parent_hash: str | None = None, backend: str = "triton") -> int:
        """Store one evaluation with its origin (its problem and candidate once each); its id."""
        candidate_hash = hashlib.sha256(source.encode()).hexdigest()
        with Session(self.engine) as db, db.begin():
            # Another writer may add the same problem or candidate at the same moment.
            _insert_once(db, ProblemRow, hash=problem.hash, name=problem.name, suite=problem.suite,
                         level=problem.level, category=problem.category, source=problem.source)
            _insert_once(db, CandidateRow, hash=candidate_hash, problem_hash=problem.hash, source=source,
                         backend=backend, parent_hash=parent_hash)
            if result.eager_ms is not None or result.compile_ms is not None:
                _insert_once(db, BaselineRow, keys=["problem_hash", "size", "device", "torch_version",
                                                    "triton_version"],
                             problem_hash=problem.hash, size=result.size, device=result.device,
                             torch_version=result.versions.get("torch", ""),
                             triton_version=result.versions.get("triton", ""),
                             eager_ms=result.eager_ms, compile_ms=result.compile_ms)
            row = _evaluation_row(result, candidate_hash, problem.hash, session, origin)
            db.add(row)
            db.flush()
            return row.id

    def entries(self, problem_hash: str) -> list[Entry]:
        """Every evaluation of a problem, oldest first."""
        return self._entries(problem_hash, [], [EvaluationRow.id])

    def best(self, problem_hash: str, k: int | None = 3) -> list[Entry]:
        """The k fastest correct evaluations (by speedup over eager), best first; all with k=None."""
        timed_and_correct = [EvaluationRow.status == EvalStatus.CORRECT.value,
                             EvaluationRow.speedup_vs_eager.is_not(None)]
        return self._entries(problem_hash, timed_and_correct,
                             [EvaluationRow.speedup_vs_eager.desc(), EvaluationRow.id], k)

    def recent(self, problem_hash: str, k: int = 3) -> list[Entry]:
        return self._entries(problem_hash, [], [EvaluationRow.id.desc()], k)

    @loud("read")
    def _entries(self, problem_hash: str, where: list, order: list, limit: int | None = None) -> list[Entry]:
        query = (select(EvaluationRow).where(EvaluationRow.problem_hash == problem_hash, *where)
                 .order_by(*order).limit(limit))
        with Session(self.engine) as db:
            return [_entry(row) for row in db.scalars(query)]

    def stratified(self, problem_hash: str, k: int = 3) -> list[Entry]:
        """Fast, middling and slow correct kernels, spread evenly over the speedup ranking
        (what a contrastive prompt shows), fastest first."""
        ranked = self.best(problem_hash, k=None)
        if len(ranked) <= k:
            return ranked
        picks = sorted({round(i * (len(ranked) - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]
        return [ranked[i] for i in picks]

    @loud("read")
    def similar_best(self, category: str | None, exclude_hash: str, k: int = 3) -> list[tuple[str, Entry]]:
        """The best correct evaluation of each other problem in the same op category:
        (problem name, entry), best first."""
        if category is None:
            return []
        with Session(self.engine) as db:
            others = db.execute(select(ProblemRow.hash, ProblemRow.name)
                                .where(ProblemRow.category == category, ProblemRow.hash != exclude_hash)).all()
        found = [(name, best[0]) for hash_, name in others if (best := self.best(hash_, k=1))]
        return sorted(found, key=lambda pair: pair[1].speedup_vs_eager, reverse=True)[:k]

    @loud("write to")
    @_retry_locked
    def submit(self, session: str, evaluation_id: int) -> None:
        with Session(self.engine) as db, db.begin():
            row = db.get(SubmissionRow, session)
            if row is None:
                db.add(SubmissionRow(session=session, evaluation_id=evaluation_id))
            else:
                row.evaluation_id = evaluation_id

    @loud("read")
    def submission(self, session: str) -> int | None:
        with Session(self.engine) as db:
            row = db.get(SubmissionRow, session)
            return row.evaluation_id if row else None

    @loud("read")
    def records(self, limit: int | None = None, ids: list[int] | None = None, with_source: bool = False,
                statuses: Iterable[str] = (), flags: Iterable[str] = ()) -> list[EvaluationRecord]:
        """Stored evaluations with their problem's name and their candidate's origin,
        newest first; only those in `ids` when given; only those with a status in
        `statuses` or a flag in `flags` when either is given."""
        query = (select(EvaluationRow, ProblemRow.name, CandidateRow)
                 .join(ProblemRow, ProblemRow.hash == EvaluationRow.problem_hash)
                 .join(CandidateRow, CandidateRow.hash == EvaluationRow.candidate_hash)
                 .order_by(EvaluationRow.id.desc()).limit(limit))
        if ids is not None:
            query = query.where(EvaluationRow.id.in_(ids))
        statuses, flags = list(statuses), list(flags)
        if statuses or flags:       # flags are a JSON list of names: match each name quoted
            query = query.where(or_(EvaluationRow.status.in_(statuses), *(EvaluationRow.flags.like(f'%"{f}"%')
                                                                          for f in flags)))
        with Session(self.engine) as db:
            return [_record(row, name, candidate, with_source) for row, name, candidate in db.execute(query)]

    @loud("read")
    def baselines(self, problem_hash: str) -> list[BaselineRow]:
        with Session(self.engine) as db:
            return list(db.scalars(select(BaselineRow).where(BaselineRow.problem_hash == problem_hash)))

    @loud("read")
    def count(self, sessions: list[str] | None = None) -> int:
        """Stored evaluations; only those of `sessions` when given."""
        query = select(func.count()).select_from(EvaluationRow)
        if sessions is not None:
            query = query.where(EvaluationRow.session.in_(sessions))
        with Session(self.engine) as db:
            return db.scalar(query)

    @loud("read")
    def source(self, candidate_hash: str) -> str | None:
        with Session(self.engine) as db:
            row = db.get(CandidateRow, candidate_hash)
            return row.source if row else None

    @loud("read")
    def problem_source(self, problem_hash: str) -> str | None:
        with Session(self.engine) as db:
            row = db.get(ProblemRow, problem_hash)
            return row.source if row else None


def _insert_once(db: Session, table, keys: tuple = ("hash",), **values) -> None:
    """INSERT ... ON CONFLICT (keys) DO NOTHING, in the dialects the store supports."""
    dialect = db.get_bind().dialect.name       # one of INSERTS: `_engine` refuses the others
    db.execute(INSERTS[dialect](table).values(**values).on_conflict_do_nothing(index_elements=list(keys)))


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")       # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _evaluation_row(result: EvalResult, candidate_hash: str, problem_hash: str, session: str,
                    origin: Origin) -> EvaluationRow:
    return EvaluationRow(
        candidate_hash=candidate_hash, problem_hash=problem_hash, status=result.status.value,
        flags=json.dumps([flag.value for flag in result.flags]), reason=result.reason,
        max_abs_error=result.max_abs_error, rel_error=result.rel_error, runtime_ms=result.runtime_ms,
        eager_ms=result.eager_ms, compile_ms=result.compile_ms, speedup_vs_eager=result.speedup_vs_eager,
        speedup_vs_compile=result.speedup_vs_compile, device=result.device, mode=result.mode.value,
        size=result.size, sandbox=result.sandbox, versions=json.dumps(result.versions), session=session,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), policy=origin.policy,
        model=origin.model, analysis=origin.analysis, turn=origin.turn, call_id=origin.call_id)


def _record(row: EvaluationRow, problem: str, candidate: CandidateRow, with_source: bool) -> EvaluationRecord:
    columns = {column.key: getattr(row, column.key) for column in EvaluationRow.__table__.columns}
    columns.update(flags=json.loads(row.flags), versions=json.loads(row.versions), problem=problem,
                   source=candidate.source if with_source else None)
    return EvaluationRecord(**columns)


def _entry(row: EvaluationRow) -> Entry:
    return Entry(id=row.id, candidate_hash=row.candidate_hash, status=EvalStatus(row.status),
                 flags=json.loads(row.flags), speedup_vs_eager=row.speedup_vs_eager,
                 speedup_vs_compile=row.speedup_vs_compile, runtime_ms=row.runtime_ms, analysis=row.analysis,
                 session=row.session, created=row.created, turn=row.turn, call_id=row.call_id)
