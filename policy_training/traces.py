"""Trajectories: each agent session's messages joined with its evaluations, and the best per problem.

A session's evaluations (with their candidates' sources, the analysis that produced each, the
turn and tool call) come from the history store (tools/history.py); its conversation (the
prompt, each turn's analysis and tool calls, the tool results) from the agent's checkpoints
(agent/runtime.py `checkpoints()`, keyed by the same session id). A session recorded without a
checkpoint (one whose checkpoints were deleted, a grader's) keeps its evaluations only.

What may teach (CUDA-L1's stage 1: executable and correct only): an evaluation is usable when
it is `correct`, no flag keeps it from the reward (tools/trust.py: a flagged result never
counts, our side's isolation flags included) and its turn opens with the performance analysis
the graph demands. A session's best usable evaluation is its fastest trusted one (untimed ones
after timed ones; then the earliest turn). The multi-mentor rule: where several sessions (of
one policy or of several models) ran a problem, the best of their bests is kept, by the same
order, so each problem yields at most one trajectory.

    trajectories = read_trajectories(HistoryStore(url))
    chosen, skipped = choose(trajectories)         # one Choice per problem; {reason: sessions}
"""
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from agent.graph import Budget, build_graph, session_config
from agent.policy import Backend, has_analysis
from agent.runtime import checkpoints
from tools.history import CandidateRow, EvaluationRecord, HistoryError, HistoryStore, ProblemRow
from tools.records import EvalStatus
from tools.trust import Use, Versus, allowed, trusted_speedup


@dataclass(frozen=True)
class StoredProblem:
    """A problem as the store keeps it (its source, never run here)."""

    hash: str
    name: str
    suite: str
    level: int | None
    category: str | None
    source: str


@dataclass(frozen=True)
class Trajectory:
    session: str
    problem: StoredProblem
    policy: str | None
    model: str | None
    backend: Backend
    evaluations: tuple[EvaluationRecord, ...]    # oldest first, sources included
    messages: tuple[dict, ...] = ()              # the checkpointed conversation; () without a checkpoint

    def usable(self) -> list[EvaluationRecord]:
        """Correct, trusted for the reward, and produced by a turn that opened with the analysis."""
        return [e for e in self.evaluations if allowed(e, Use.REWARD) and has_analysis(e.analysis or "")]

    def best(self) -> EvaluationRecord | None:
        usable = self.usable()
        return max(usable, key=rank) if usable else None

    def why_not(self) -> str:
        """Why this session teaches nothing ('' when it does)."""
        if self.best() is not None:
            return ""
        correct = [e for e in self.evaluations if e.status is EvalStatus.CORRECT]
        if not correct:
            return "no correct evaluation"
        if not any(allowed(e, Use.REWARD) for e in correct):
            return "correct only with a disqualifying flag"
        return "no performance analysis"

    def conversation_until(self, evaluation: EvaluationRecord) -> list[dict]:
        """The checkpointed turns after the prompt, up to the assistant turn that asked for `evaluation`
        (its tool results left out); [] without a checkpoint or where the call is not found."""
        for index, message in enumerate(self.messages):
            calls = (message.get("tool_calls") or []) if message.get("role") == "assistant" else []
            if any(call.get("id") == evaluation.call_id for call in calls):
                return [dict(m) for m in self.messages[2:index + 1]]
        return []


@dataclass(frozen=True)
class Choice:
    """The trajectory kept for a problem, its best evaluation, and how many sessions competed."""

    trajectory: Trajectory
    evaluation: EvaluationRecord
    mentors: tuple[str, ...]        # the policy/model of every session that ran the problem


def rank(evaluation: EvaluationRecord) -> tuple:
    """Larger is better: timed before untimed, faster first, then the earlier turn and evaluation."""
    speed = trusted_speedup(evaluation, Versus.EAGER)
    return (speed is not None, speed or 0.0, -(evaluation.turn or 0), -evaluation.id)


def mentor(trajectory: Trajectory) -> str:
    return f"{trajectory.policy}:{trajectory.model}" if trajectory.model else str(trajectory.policy)


def choose(trajectories: Iterable[Trajectory]) -> tuple[list[Choice], Counter]:
    """The best trajectory per problem (the multi-mentor rule) and, per reason, the sessions left out."""
    by_problem: dict[str, list[Trajectory]] = {}
    skipped: Counter = Counter()
    for t in trajectories:
        by_problem.setdefault(t.problem.hash, []).append(t)
    chosen = []
    for group in by_problem.values():
        for t in group:
            if t.why_not():
                skipped[t.why_not()] += 1
        usable = [t for t in group if t.best() is not None]
        if usable:
            winner = max(usable, key=lambda t: rank(t.best()))
            if len(usable) > 1:
                skipped["another mentor's was better"] += len(usable) - 1
            chosen.append(Choice(winner, winner.best(), tuple(sorted({mentor(t) for t in group}))))
    return sorted(chosen, key=lambda c: (c.trajectory.problem.name, c.trajectory.problem.hash)), skipped


# ---- reading the store and the checkpoints ---------------------------------------------------

def read_trajectories(store: HistoryStore, policies: Sequence[str] = (), with_messages: bool = True) -> list[Trajectory]:
    """Every session in the store with an origin (optionally only those of `policies`, matched
    against the policy name or `policy:model`), with its checkpointed conversation."""
    records = list(reversed(store.records(with_source=True)))        # oldest first
    problems, backends = problem_rows(store), candidate_backends(store)
    sessions: dict[str, list[EvaluationRecord]] = {}
    for record in records:
        if record.policy is not None:
            sessions.setdefault(record.session, []).append(record)
    found = []
    for session, evaluations in sessions.items():
        first = evaluations[0]
        t = Trajectory(session=session, problem=problems[first.problem_hash], policy=first.policy, model=first.model,
                       backend=Backend(backends[first.candidate_hash]), evaluations=tuple(evaluations))
        if not policies or t.policy in policies or mentor(t) in policies:
            found.append(t)
    return with_conversations(found) if with_messages else found


def with_conversations(found: list[Trajectory]) -> list[Trajectory]:
    """Each trajectory with its session's messages from $KERNELPILOT_HOME/sessions.db."""
    with checkpoints() as saver:
        graph = build_graph(saver)
        return [Trajectory(**{**t.__dict__, "messages": tuple(saved_messages(graph, t.session))}) for t in found]


def saved_messages(graph, session: str) -> list[dict]:
    return graph.get_state(session_config(session, Budget())).values.get("messages", [])


def problem_rows(store: HistoryStore) -> dict[str, StoredProblem]:
    rows = _read(store, select(ProblemRow))
    return {r.hash: StoredProblem(r.hash, r.name, r.suite, r.level, r.category, r.source) for r in rows}


def candidate_backends(store: HistoryStore) -> dict[str, str]:
    return dict(_read(store, select(CandidateRow.hash, CandidateRow.backend), scalars=False))


def _read(store: HistoryStore, query, scalars: bool = True) -> list:
    try:
        with Session(store.engine) as db:
            return list(db.scalars(query)) if scalars else [tuple(row) for row in db.execute(query)]
    except DBAPIError as error:
        raise HistoryError(store.where, str(error.orig or error).splitlines()[0], "read") from error
