"""Which attempt a session hands back, and `optimize`'s final check of it at a second size.

The answer is the first candidate, in the order below, that the trust rules allow as best
(tools/trust.py) and whose final checks (if any ran) allow it too: the accepted submit, then
the session's best, then the other judged attempts, fastest first. `optimize` ends with a final
check: the answer is evaluated again, untimed, at the problem's size and at a second size set
(tools/second_size.py), unless it is the accepted submit (`submit` runs that check itself). A
candidate that does not hold there is not handed back and the next one is checked, up to
FINAL_CHECKS of them; each check is an attempt (tool `final_check`) in the session's state,
the report and the history store.

    checks = run_final_check(session)      # after the loop, before the outputs are written
    chosen = answer(session.state())
"""
from agent.graph import JUDGED_TOOLS, attempt_record, attempts_of, best_of
from agent.policy import Attempt
from tools.toolbox import FINAL_CHECK, Toolbox
from tools.trust import Use, Versus, allowed, trusted_speedup

FINAL_CHECKS = 3


def candidates(state: dict) -> list[Attempt]:
    """What may be the answer, in the order it is chosen, each source once: the accepted
    submit, the session's best, then the judged attempts the trust rules allow as best,
    timed before untimed, fastest first (earlier first among equals)."""
    attempts = attempts_of(state)
    submitted = [a for a in attempts if a.evaluation_id == state.get("submitted")][-1:]
    judged = [a for a in attempts if a.tool in JUDGED_TOOLS and allowed(a, Use.BEST)]
    ranked = sorted(judged, key=lambda a: -(trusted_speedup(a, Versus.EAGER) or 0.0))
    best = best_of(state)
    found, seen = [], set()
    for attempt in [*submitted, *([best] if best else []), *ranked]:
        if attempt.code not in seen and allowed(attempt, Use.BEST):
            seen.add(attempt.code)
            found.append(attempt)
    return found


def checks_of(state: dict) -> list[Attempt]:
    """The session's final checks (they are attempts of no policy call)."""
    return [a for a in attempts_of(state) if a.tool == FINAL_CHECK]


def final_checks(state: dict, code: str) -> list[Attempt]:
    return [a for a in checks_of(state) if a.code == code]


def answer(state: dict) -> Attempt | None:
    """The attempt handed back: the first candidate that no final check of its source refused."""
    return next((a for a in candidates(state) if all(allowed(c, Use.BEST) for c in final_checks(state, a.code))),
                None)


def size_text(state: dict, chosen: Attempt) -> str:
    """What the answer's check at a second size said, or that none ran."""
    checked = [a for a in [chosen, *final_checks(state, chosen.code)] if a.second_size]
    return checked[-1].second_size if checked else "not checked at a second size"


def pending_check(state: dict) -> Attempt | None:
    """The answer, where it still needs its final check (not a submit, not checked before)."""
    chosen = answer(state)
    if chosen is None or chosen.tool == "submit" or final_checks(state, chosen.code):
        return None
    return chosen


def final_check(state: dict, toolbox: Toolbox) -> list[Attempt]:
    """Check the answer at a second size; where it does not hold, the next candidate; at most
    FINAL_CHECKS evaluations. The new attempts, to add to the session's state."""
    checks: list[Attempt] = []
    for _ in range(FINAL_CHECKS):
        now = {**state, "attempts": [*state.get("attempts", []), *(c.to_state() for c in checks)]}
        chosen = pending_check(now)
        if chosen is None:
            break
        report = toolbox.final_check(chosen.code)
        checks.append(attempt_record(state.get("turns", 0), FINAL_CHECK, report, chosen.code))
    return checks


def run_final_check(session) -> list[Attempt]:
    """`final_check` on an agent session (agent/session.py), its attempts saved in the checkpoint."""
    checks = final_check(session.state(), session.context.toolbox)
    if checks:
        # As run_tools' own update: its router sees the stop already set and ends the run again.
        session.graph.update_state(session.config, {"attempts": [c.to_state() for c in checks]}, as_node="run_tools")
    return checks
