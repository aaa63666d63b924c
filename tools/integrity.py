"""The trusted side's judgement of what a worker saw the candidate do to its process.

Every `loaded`, `ran` and `timed` reply carries an audit (`tools/sandbox/audit.py`); a
finding here is a cheat, and the reason names the mechanism:
timers or synchronize replaced (timer tampering), torch or the worker patched
(monkey-patching), Python threads still running after the call (background work outside
the timer), child processes left running (detached children), global precision flags
changed, the persisting-L2 limit raised (L2 residency across the flush). A reply with no
audit comes from a worker that was itself tampered with.
"""
from tools.sandbox.replies import Audit

TIMER_WORDS = ("time.", "Event", "synchronize", "elapsed_time", "Stream", "_cuda_", "perf_counter")


def judge_audit(audit: Audit | None) -> str:
    """'' when a reply's audit shows nothing wrong, else the rejection's reason."""
    if audit is None:
        return "the worker's reply carries no audit (the worker itself was tampered with)"
    if audit.tampered:
        names = ", ".join(audit.tampered[:5])
        kind = "timer tampering" if any(w in n for n in audit.tampered for w in TIMER_WORDS) else "monkey-patching"
        return f"{kind}: the candidate replaced {names}"
    if audit.threads:
        return (f"background threads: {len(audit.threads)} thread(s) still running after the call "
                f"({', '.join(audit.threads[:3])}): work outside the timer")
    if audit.children:
        return f"detached children: {len(audit.children)} child process(es) left running after the call"
    if audit.flags_changed:
        return f"global precision flags changed: {', '.join(audit.flags_changed)}"
    if audit.l2_persisting_bytes > 0:
        return (f"persisting-L2 residency: the candidate set the persisting-L2 limit to "
                f"{audit.l2_persisting_bytes} bytes (data kept in L2 across the flush)")
    return ""
