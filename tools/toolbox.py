"""The tools a policy calls: compile, check_correctness, benchmark, profile, speedup_history, submit.

Each is one typed method over a pydantic request, returning a pydantic result that has
a compact `text()` for an LLM's context (key numbers first, the reason that matters,
logs cut short). `Toolbox.schemas()` describes them once for function calling (the
OpenAI tools format); `Toolbox.call(name, arguments)` validates the arguments and
dispatches, and malformed arguments come back as a `ToolError` result for the model
to correct, never as an exception. Every evaluation a tool runs is recorded in the
history store under the toolbox's session. A run killed mid-turn leaves evaluations in the
store that its checkpoint never saw: after `reuse_unseen(known ids)` the next calls with the
same code take those records, in order, instead of evaluating again (no duplicate rows).

    toolbox = Toolbox(problem, evaluator, HistoryStore(), session="s1", origin=Origin("builtin"))
    print(toolbox.call("check_correctness", {"code": source}).text())
"""
import hashlib
from dataclasses import replace

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.evaluator import Evaluator
from tools.history import Entry, EvaluationRecord, HistoryError, HistoryStore, Origin
from tools.ncu import NcuReport, nsight_compute
from tools.ncu import enabled as ncu_enabled
from tools.problems import Problem
from tools.records import EvalResult, EvalStatus, Mode, ProfileResult
from tools.trust import Use, Versus, allowed, timing_believed, trusted_speedup, why_not

LOG_LINES = 12
FINAL_CHECK = "final_check"     # the call id the final check's evaluations are recorded under (no policy call)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeRequest(Request):
    code: str = Field(description="The full candidate source: imports, kernels and class ModelNew(nn.Module).")


class HistoryRequest(Request):
    k: int = Field(3, ge=1, le=10, description="How many entries in each list.")


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)


class EvaluationReport(Report):
    tool: str
    evaluation_id: int
    result: EvalResult
    reused: bool = False        # taken from the store: recorded by a run cut off before its checkpoint

    def text(self) -> str:
        if self.reused:
            return f"{render_eval(self.tool, self.result, trials=False)}\n(evaluation #{self.evaluation_id}, " \
                   f"recorded before the run was cut off: reused, not run again)"
        return render_eval(self.tool, self.result)


class ProfileReport(Report):
    profile: ProfileResult
    nsight: NcuReport | None = None     # Nsight Compute counters, on a GPU that profiled cleanly

    def text(self) -> str:
        p = self.profile
        if not p.available or p.status is not None:
            return f"profile: {p.status.value + ': ' if p.status else ''}{p.reason}"
        return self._torch_text() + (f"\n{self.nsight.text()}" if self.nsight else "")

    def _torch_text(self) -> str:
        p = self.profile
        lines = [f"profile on {p.device}: {p.device_ms_per_call:.4g} ms of device time per forward"]
        if p.roofline:
            r = p.roofline
            lines.append(f"  {r.bound}-bound: {r.achieved_gbps:.0f} GB/s of {r.ceiling_gbps:.0f} (minimum bytes), "
                         f"{r.achieved_tflops:.2f} of {r.ceiling_tflops:.1f} TFLOP/s; "
                         f"{r.fraction_of_roofline:.0%} of the roofline")
        lines += [f"  {k.share:6.1%}  {k.device_ms_per_call:.4g} ms  x{k.launches_per_call:g}  {k.name}"
                  for k in p.kernels[:10]]
        return "\n".join(lines)


class HistoryView(Report):
    problem: str
    id: int
    status: EvalStatus
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    flags: list[str]
    analysis: str | None
    candidate_hash: str


class HistoryReport(Report):
    best: list[HistoryView]
    stratified: list[HistoryView]
    recent: list[HistoryView]
    similar: list[HistoryView]
    best_untimed: bool = False      # nothing was timed (no GPU): `best` holds the newest correct kernels

    def text(self) -> str:
        parts = []
        best = "best (none timed; the newest correct ones)" if self.best_untimed else "best"
        for title, views in ((best, self.best), ("fast/middling/slow", self.stratified), ("recent", self.recent),
                             ("best on similar problems", self.similar)):
            parts.append(f"{title}:" + ("".join(f"\n  {render_view(v)}" for v in views) or " none"))
        return "\n".join(parts)


class SubmitReport(Report):
    accepted: bool
    reason: str
    evaluation_id: int
    result: EvalResult

    def text(self) -> str:
        verdict = "accepted as the answer" if self.accepted else f"not accepted: {self.reason}"
        return f"submit: {verdict}\n{render_eval('final check', self.result)}"


class ToolError(Report):
    tool: str
    message: str

    def text(self) -> str:
        return f"{self.tool}: error: {self.message}"


TOOLS = {
    "compile": (CodeRequest, "Import the candidate and run one forward (Triton compiles at first launch); "
                             "reports compile and runtime errors."),
    "check_correctness": (CodeRequest, "Compare the candidate with the reference on fresh secret inputs (5 trials)."),
    "benchmark": (CodeRequest, "Check correctness, then on a GPU time the candidate against eager and torch.compile "
                               "(median runtime, speedups). Not the answer: submit hands one back."),
    "profile": (CodeRequest, "The kernels one forward launches on the GPU, with launch counts and time shares."),
    "speedup_history": (HistoryRequest, "Earlier kernels for this problem and similar ones, with measured speedups."),
    "submit": (CodeRequest, "Hand the candidate back as the answer after a final full check with timing, and a "
                            "check at a second size set (the problem's sizes scaled): read sizes from the inputs."),
}


class Toolbox:
    def __init__(self, problem: Problem, evaluator: Evaluator, store: HistoryStore, session: str, origin: Origin):
        self.problem, self.evaluator, self.store, self.session, self.origin = problem, evaluator, store, session, origin
        self.analysis: str | None = None      # the analysis of the turn being run, recorded with its candidates
        self.turn: int | None = None          # the turn and tool call id being run, recorded with its evaluations
        self.call_id: str | None = None
        self.unseen: list[Entry] = []         # this session's stored evaluations its checkpoint lacks, oldest first

    def reuse_unseen(self, known: set[int]) -> None:
        """Evaluations of this session recorded after the last of `known` (the ids the agent's
        checkpoint holds) are to be reused by the next calls, in order, not run again."""
        if self.store.count([self.session]) <= len(known):
            self.unseen = []
            return
        last = max(known, default=0)
        # a final check cut off before its checkpoint is run again: it is no policy call to hand on
        self.unseen = [e for e in self.store.entries(self.problem.hash)
                       if e.session == self.session and e.id > last and e.call_id != FINAL_CHECK]

    def compile(self, request: CodeRequest) -> EvaluationReport:
        return self._evaluate("compile", request.code, trials=1, timed=False)

    def check_correctness(self, request: CodeRequest) -> EvaluationReport:
        return self._evaluate("check_correctness", request.code, timed=False)

    def benchmark(self, request: CodeRequest) -> EvaluationReport:
        return self._evaluate("benchmark", request.code)

    def profile(self, request: CodeRequest) -> ProfileReport:
        profile = self.evaluator.profile(self.problem, request.code)
        if not profile.available or profile.status is not None or not ncu_enabled():
            return ProfileReport(profile=profile)
        nsight = nsight_compute(self.problem, request.code, self.evaluator.device.cuda_index)
        return ProfileReport(profile=profile, nsight=nsight)

    def speedup_history(self, request: HistoryRequest) -> HistoryReport:
        """Best lists hold only what the trust rules allow as best (where nothing was timed,
        the newest correct kernels, said to be untimed); `recent` shows everything."""
        view = lambda entries: [history_view(self.problem.name, e) for e in entries]
        trusted = lambda entries: [e for e in entries if allowed(e, Use.BEST)]
        similar = self.store.similar_best(self.problem.category, self.problem.hash, request.k)
        best = trusted(self.store.best(self.problem.hash, None))[:request.k]
        untimed = [] if best else trusted(e for e in reversed(self.store.entries(self.problem.hash))
                                          if e.speedup_vs_eager is None)[:request.k]
        return HistoryReport(best=view(best or untimed), best_untimed=bool(untimed),
                             stratified=view(trusted(self.store.stratified(self.problem.hash, request.k))),
                             recent=view(self.store.recent(self.problem.hash, request.k)),
                             similar=[history_view(name, e) for name, e in similar if allowed(e, Use.BEST)])

    def submit(self, request: CodeRequest) -> SubmitReport:
        report = self._evaluate("submit", request.code, second_size=True)
        if not allowed(report.result, Use.BEST):     # tools/trust.py: correct and not disqualified
            return SubmitReport(accepted=False, reason=f"the final check: {why_not(report.result, Use.BEST)}",
                                evaluation_id=report.evaluation_id, result=report.result)
        self.store.submit(self.session, report.evaluation_id)
        return SubmitReport(accepted=True, reason="", evaluation_id=report.evaluation_id, result=report.result)

    def final_check(self, code: str) -> EvaluationReport:
        """`optimize`'s last word on its answer (not a tool the policy calls): correctness at the
        problem's size and at a second size set, untimed (the answer keeps its measured times)."""
        self.call_id = FINAL_CHECK
        try:
            return self._evaluate(FINAL_CHECK, code, timed=False, second_size=True)
        finally:
            self.call_id = None

    def _evaluate(self, tool: str, code: str, **overrides) -> EvaluationReport:
        if self.unseen:
            return self._reused(tool, code, self.unseen.pop(0))
        result = self.evaluator.evaluate(self.problem, code, replace(self.evaluator.config, **overrides))
        origin = replace(self.origin, analysis=self.analysis or self.origin.analysis, turn=self.turn,
                         call_id=self.call_id)
        evaluation_id = self.store.record(self.problem, code, result, origin, self.session)
        return EvaluationReport(tool=tool, evaluation_id=evaluation_id, result=result)

    def _reused(self, tool: str, code: str, entry: Entry) -> EvaluationReport:
        if entry.candidate_hash != hashlib.sha256(code.encode()).hexdigest():
            raise HistoryError(self.store.where, f"session {self.session}: stored evaluation #{entry.id} is not of "
                                                 f"the code the resumed {tool} call sends; the history store and "
                                                 f"the checkpoint disagree", "reuse an evaluation from")
        record = self.store.records(ids=[entry.id])[0]
        return EvaluationReport(tool=tool, evaluation_id=entry.id, result=stored_result(record), reused=True)

    def call(self, name: str, arguments: dict, analysis: str | None = None, turn: int | None = None,
             call_id: str | None = None) -> Report:
        """Dispatch a function call from a model; bad names and arguments are results.
        `analysis` is the text of the turn that made the call, stored with its evaluations,
        as are the session's `turn` and the model's `call_id` for the call."""
        if name not in TOOLS:
            return ToolError(tool=name, message=f"no such tool; the tools are {', '.join(TOOLS)}")
        try:
            request = TOOLS[name][0].model_validate(arguments)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in error.errors())
            return ToolError(tool=name, message=f"bad arguments: {problems}")
        self.analysis, self.turn, self.call_id = analysis, turn, call_id
        try:
            return getattr(self, name)(request)
        finally:
            self.analysis, self.turn, self.call_id = None, None, None

    @staticmethod
    def schemas() -> list[dict]:
        """The tools in the OpenAI function-calling format, from the request models."""
        return [{"type": "function", "function": {"name": name, "description": description,
                                                  "parameters": request.model_json_schema()}}
                for name, (request, description) in TOOLS.items()]


def history_view(problem: str, entry: Entry) -> HistoryView:
    return HistoryView(problem=problem, id=entry.id, status=entry.status,
                       speedup_vs_eager=trusted_speedup(entry, Versus.EAGER),
                       speedup_vs_compile=trusted_speedup(entry, Versus.COMPILE), flags=entry.flags,
                       analysis=entry.analysis, candidate_hash=entry.candidate_hash)


def render_view(view: HistoryView) -> str:
    speed = f"{view.speedup_vs_eager:.2f}x vs eager" if view.speedup_vs_eager is not None else "not timed"
    flags = f" [{', '.join(view.flags)}]" if view.flags else ""
    gist = next((line.strip() for line in (view.analysis or "").splitlines()
                 if line.strip() and not line.lstrip().startswith("#")), "")
    analysis = f" — {gist[:120]}" if gist else ""
    return f"#{view.id} {view.problem}: {view.status.value}, {speed}{flags}{analysis}"


def stored_result(record: EvaluationRecord) -> EvalResult:
    """An EvalResult from what the store keeps: the verdict, flags, errors and times; not the
    trials, timing spread, log or lint findings (left empty, and said so in `notes`)."""
    fields = {k: v for k, v in record.model_dump().items() if k in EvalResult.model_fields}
    return EvalResult(**fields, phase=None, trials_run=0, trials_passed=0,
                      timing=None, network_isolated="network_not_isolated" not in record.flags,
                      lint_findings=[], log="", seconds=0.0,
                      notes=[f"from the history store (evaluation #{record.id}): trials, timing spread and log "
                             "were not kept"])


def render_eval(tool: str, r: EvalResult, trials: bool = True) -> str:
    """Key numbers first, then the reason, then the end of the log."""
    head = f"{tool}: {r.status.value}"
    eager, compiled = trusted_speedup(r, Versus.EAGER), trusted_speedup(r, Versus.COMPILE)
    if r.runtime_ms is not None and not timing_believed(r):
        head += " (timing not believed: no speedup is claimed)" if r.status is EvalStatus.CORRECT else ""
    elif r.runtime_ms is not None:
        head += f", {r.runtime_ms:.4g} ms"
        if eager is not None:
            head += f" ({eager:.2f}x vs eager"
            head += f", {compiled:.2f}x vs torch.compile)" if compiled else ")"
    elif r.mode is Mode.CPU_INTERPRETER:
        head += " (no GPU: correctness only, no timing)"
    errors = (f"max abs error {r.max_abs_error:.3g}, rel error {r.rel_error:.3g}"
              if r.rel_error is not None and r.max_abs_error is not None else "")
    lines = [head, f"trials passed {r.trials_passed}/{r.trials_run}" + (f", {errors}" if errors else "")
             if trials else errors]
    lines = [line for line in lines if line]
    if r.reason:
        lines.append(f"reason: {r.reason[:600]}")
    if r.flags:
        lines.append(f"flags: {', '.join(f.value for f in r.flags)}")
    if r.second_size is not None:
        lines.append(r.second_size.text()[:600])
    log = [line for line in r.log.splitlines() if line.strip()][-LOG_LINES:]
    if log and r.status is not EvalStatus.CORRECT:
        lines.append("log (end):\n  " + "\n  ".join(line[:200] for line in log))
    return "\n".join(lines)
