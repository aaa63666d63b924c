"""The built-in policy: writes real Triton kernels for a problem without any LLM.

Each turn opens with the `## Performance analysis` section: in full the first time the
conversation gets it (the op graph, bytes and FLOPs, the roofline, the stages, what stays
in PyTorch), then in short with the turn that has it. What the turn does depends on the
last message (answers.py):
- the task, tool results, or a request to optimize: the search, one tool per turn —
  turn 1 benchmarks the plan's first configuration; on a GPU later turns benchmark the
  next configuration the search picks from what measured fastest, then submit the
  fastest correct kernel, only if it beat eager (otherwise it says nothing beat the
  reference and stops without a submit); without a GPU (no timings) it submits the first
  kernel verified correct, saying plainly that speed was not measured, unless the plan
  saves nothing on paper (no fewer bytes, no fewer launches than eager): then nothing is
  submitted; a turn after the submit has no tool calls, which ends the session;
- the chat's opening request: the analysis alone, nothing run;
- a question: an answer from the analysis, or a plain "cannot answer" (no tool calls).
Every search turn says, on its `Coverage:` line, how much of the forward runs in our
Triton kernels and what stays in PyTorch, and why (coverage.py).
Given a read-only HistoryStore, configurations measured in earlier sessions (matched by
the sha256 of the source it would emit) count as measured.

    policy = BuiltinPolicy(history=HistoryStore(), budget=8)
    turn = policy.turn(TurnInput(problem, Backend.TRITON, device, messages, Toolbox.schemas(), attempts))
"""
import hashlib
import json
from dataclasses import dataclass

from agent.builtin import search
from agent.builtin.analysis import HEADING, Work, analysis_text, fmt, launch_bound, unsupported_text, work_line
from agent.builtin.answers import Facts, Request, answer, request_of
from agent.builtin.coverage import Coverage, coverage, saves_nothing
from agent.builtin.capture import capture
from agent.builtin.ir import CaptureError, OpGraph
from agent.builtin.partition import Stage, Unsupported, partition
from agent.builtin.plans.common import Config
from agent.builtin.plans.program import build_source
from agent.builtin.rewrite import rewrite
from agent.policy import Attempt, PolicyTurn, ToolCall, TurnInput
from tools import roofline
from tools.device import DeviceInfo
from tools.problems import Problem, ProblemError
from tools.records import EvalStatus, Mode
from tools.trust import Use, Versus, allowed, trusted_runtime_ms, trusted_speedup, why_not

CPU_TRIES = 2


@dataclass(frozen=True)
class Plan:
    """A problem as the built-in policy sees it: captured, rewritten, partitioned, or why not."""

    graph: OpGraph | None
    stages: tuple[Stage, ...]
    notes: tuple[str, ...]
    error: str | None
    captured: OpGraph | None = None     # before the rewrites: what eager runs


@dataclass(frozen=True)
class Result:
    config: Config
    attempt: Attempt


def sha(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def make_plan(problem: Problem) -> Plan:
    graph = captured = None
    try:
        captured = capture(problem)
        graph, notes = rewrite(captured)
        stages = partition(graph)
        build_source(problem, graph, stages, search.default_config(stages, graph))   # it must emit, or no plan
    except (CaptureError, Unsupported) as error:
        return Plan(graph, (), (), str(error))
    except ProblemError as error:       # e.g. get_inputs() returns what the evaluator cannot draw
        return Plan(graph, (), (), f"the problem's inputs cannot be drawn: {error}")
    except (ValueError, KeyError, TypeError, IndexError) as error:   # a graph shape the planner did not foresee
        return Plan(graph, (), (), f"the planner could not map this graph ({type(error).__name__}: {error})")
    return Plan(graph, tuple(stages), tuple(notes), None, captured)


class BuiltinPolicy:
    name = "builtin"
    model = "builtin-0.1"

    def __init__(self, history=None, budget: int = 8, ceilings: tuple[float, float] | None = None):
        """`history`: a read-only `tools.history.HistoryStore` (anything with `entries(problem_hash)`);
        `budget`: how many configurations one session may benchmark on a GPU; `ceilings`: the
        GPU's (bytes/s, FLOP/s) if known, else measured once by `tools/roofline.py` on a GPU."""
        self.history, self.budget, self.known_ceilings = history, budget, ceilings
        self._plans: dict[tuple[str, str], Plan] = {}
        self._sources: dict[tuple[str, str, Config], str] = {}
        self._ceilings: dict[str, tuple[float, float]] = {}

    def plan(self, problem: Problem) -> Plan:
        key = (problem.hash, problem.size)
        if key not in self._plans:
            self._plans[key] = make_plan(problem)
        return self._plans[key]

    def source(self, problem: Problem, config: Config) -> str:
        key = (problem.hash, problem.size, config)
        if key not in self._sources:
            plan = self.plan(problem)
            self._sources[key] = build_source(problem, plan.graph, list(plan.stages), config)
        return self._sources[key]

    def turn(self, turn_input: TurnInput) -> PolicyTurn:
        problem, device, messages = turn_input.problem, turn_input.device, turn_input.messages
        plan = self.plan(problem)
        if plan.error:
            said = unsupported_text(plan.error, plan.graph, _problem_line(problem, device))
            return PolicyTurn(_once(said, messages, [f"Not supported by the built-in plans: {plan.error}."]))
        request, question = request_of(messages)
        ceilings = self._device_ceilings(device)
        work = Work.of(plan.graph, list(plan.stages), plan.captured)
        analysis = analysis_text(work, plan.graph, list(plan.stages), device, ceilings, list(plan.notes),
                                 _problem_line(problem, device))
        bound = launch_bound(work, ceilings, list(plan.stages))
        space = search.space_for(list(plan.stages), plan.graph, device.mode is Mode.GPU, bound)
        results = self._results(problem, space, turn_input.attempts)
        submitted = [a for a in turn_input.attempts if a.tool == "submit"]
        if request is Request.QUESTION:
            best = next((r.config for r in results if r.attempt.status is EvalStatus.CORRECT), space.start)
            said = _search_text(results) + (f"\n{_final_text(submitted[-1], device)}" if submitted else "")
            return PolicyTurn(answer(question, Facts(plan.graph, plan.captured, plan.stages, plan.notes, work, device,
                                                     ceilings, self._cover(plan, best, ceilings), said)))
        head = _once(analysis, messages, [_problem_line(problem, device), work_line(work)])
        if request is Request.ANALYSE:
            return PolicyTurn(f"{head}\n\n{self._cover(plan, space.start, ceilings).line()}\n\n{ASK_NEXT}")
        if submitted:
            config = next((r.config for r in results if r.attempt.code == submitted[-1].code), space.start)
            return PolicyTurn(f"{head}\n\n{self._cover(plan, config, ceilings).line()}\n\n{_search_text(results)}\n\n"
                              f"{_final_text(submitted[-1], device)}")
        if device.mode is Mode.GPU:
            text, config, tool = self._gpu_step(problem, space, results, turn_input.attempts)
        else:
            text, config, tool = self._cpu_step(space, results, work)
        cover = self._cover(plan, config or space.start, ceilings).line()
        body = f"{head}\n\n{cover}\n\n{_search_text(results)}\n\n{text}"
        if config is None:
            return PolicyTurn(body)
        arguments = json.dumps({"code": self.source(problem, config)})
        return PolicyTurn(body, (ToolCall(f"call_{turn_input.turn}_{tool}", tool, arguments),))

    def _cover(self, plan: Plan, config: Config, ceilings: tuple[float, float] | None) -> Coverage:
        """What the kernel of `config` covers (its `line()` is the turn's `Coverage:` line, which the report quotes)."""
        return coverage(plan.graph, list(plan.stages), config, ceilings, plan.captured)

    def _gpu_step(self, problem: Problem, space: search.Space, results: list[Result], attempts: list[Attempt]):
        measured = self._measured(problem, space, results)
        spent = sum(a.tool == "benchmark" for a in attempts)
        nxt = self._next_distinct(problem, space, measured, self.budget - spent)
        if nxt is not None:
            return f"### Next\nBenchmark configuration {_config_text(nxt, space)}.", nxt, "benchmark"
        winner, speedup = self._fastest(problem, space, results)
        if winner is None or speedup is None or speedup <= 1.0:
            best = f"the best correct kernel ran at {speedup:.2f}x of eager" if speedup else "no kernel was both correct and timed"
            return (f"### Verdict\nNothing beat the reference: {best}. No kernel is handed back as the answer.",
                    None, "")
        return (f"### Next\nSubmit the fastest correct kernel ({_config_text(winner, space)}, {speedup:.2f}x vs eager).",
                winner, "submit")

    def _next_distinct(self, problem: Problem, space: search.Space, measured: dict[Config, float | None],
                       remaining: int) -> Config | None:
        """The search's next configuration whose source differs from every measured one (an
        axis can be moot: tiles when the GEMM runs on cuBLAS); moot ones take the twin's time."""
        timed = {sha(self.source(problem, c)): ms for c, ms in measured.items()}
        while (nxt := search.next_config(space, measured, remaining)) is not None:
            twin = sha(self.source(problem, nxt))
            if twin not in timed:
                return nxt
            measured[nxt] = timed[twin]
        return None

    def _cpu_step(self, space: search.Space, results: list[Result], work: Work):
        correct = [r for r in results if r.attempt.status is EvalStatus.CORRECT]
        if correct and saves_nothing(work.eager_bytes, work.eager_launches, work.fused_bytes, work.fused_launches):
            return (f"### Verdict\nThe kernel is verified correct, but the plan moves about {fmt(work.fused_bytes)}B "
                    f"in {work.fused_launches} launch(es) against eager's {fmt(work.eager_bytes)}B in "
                    f"{work.eager_launches}: nothing saved on paper, and without a GPU no timing can show a gain. It "
                    "is not submitted as an improvement: keep the reference (a GPU run would measure it).", None, "")
        if correct:
            return ("### Next\nSubmit the first kernel verified correct. No GPU here: its speed was not measured, "
                    "so no speedup is claimed.", correct[0].config, "submit")
        tried = {r.config for r in results}
        options = [c for c in [space.start] + search.neighbours(space.start, space) if c not in tried]
        if len(tried) >= CPU_TRIES or not options:
            return ("### Verdict\nNo configuration was verified correct; no kernel is handed back.", None, "")
        verb = "Check" if not tried else "The last kernel failed; check"
        return (f"### Next\n{verb} configuration {_config_text(options[0], space)} (correctness only: no GPU).",
                options[0], "benchmark")

    def _results(self, problem: Problem, space: search.Space, attempts: list[Attempt]) -> list[Result]:
        """This session's evaluations of our own sources, matched to their configurations."""
        by_hash = {sha(self.source(problem, c)): c for c in self._known_configs(problem, space)}
        by_hash.update({sha(src): c for (h, s, c), src in self._sources.items() if h == problem.hash and s == problem.size})
        return [Result(by_hash[sha(a.code)], a) for a in attempts
                if a.tool in ("benchmark", "check_correctness") and sha(a.code) in by_hash]

    def _known_configs(self, problem: Problem, space: search.Space) -> list[Config]:
        return [space.start] + search.neighbours(space.start, space)

    def _measured(self, problem: Problem, space: search.Space, results: list[Result]) -> dict[Config, float | None]:
        measured: dict[Config, float | None] = {}
        for r in results:
            measured[r.config] = trusted_runtime_ms(r.attempt) if allowed(r.attempt, Use.BEST) else None
        history = self._history(problem)
        frontier = [space.start] + list(measured)
        while frontier:                       # pull in what earlier sessions measured, around what we know
            config = frontier.pop(0)
            for candidate in [config] + search.neighbours(config, space):
                entry = history.get(sha(self.source(problem, candidate)))
                if entry is not None and candidate not in measured:
                    measured[candidate] = entry[0]
                    frontier.append(candidate)
        return measured

    def _fastest(self, problem: Problem, space: search.Space, results: list[Result]):
        speedups: dict[Config, float] = {}
        for r in results:
            speedup = trusted_speedup(r.attempt, Versus.EAGER) if allowed(r.attempt, Use.BEST) else None
            if speedup is not None:
                speedups[r.config] = max(speedups.get(r.config, 0.0), speedup)
        history = self._history(problem)
        for config in self._measured(problem, space, results):
            entry = history.get(sha(self.source(problem, config)))
            if entry is not None and entry[1] is not None and config not in speedups:
                speedups[config] = entry[1]
        if not speedups:
            return None, None
        winner = max(speedups, key=lambda c: (speedups[c], -list(speedups).index(c)))
        return winner, speedups[winner]

    def _history(self, problem: Problem) -> dict[str, tuple[float, float | None]]:
        """candidate sha256 -> (runtime ms, speedup vs eager) of earlier correct, timed evaluations."""
        if self.history is None:
            return {}
        found: dict[str, tuple[float, float | None]] = {}
        for e in self.history.entries(problem.hash):
            runtime = trusted_runtime_ms(e) if allowed(e, Use.BEST) else None
            if runtime is not None and (e.candidate_hash not in found or runtime < found[e.candidate_hash][0]):
                found[e.candidate_hash] = (runtime, trusted_speedup(e, Versus.EAGER))
        return found

    def _device_ceilings(self, device: DeviceInfo) -> tuple[float, float] | None:
        if device.mode is not Mode.GPU:
            return None
        if self.known_ceilings is not None:
            return self.known_ceilings
        if device.name not in self._ceilings:
            self._ceilings[device.name] = roofline.ceilings(device.torch_device)   # measured once, cached on disk
        return self._ceilings[device.name]


ASK_NEXT = ("### Next\nNothing run yet. Ask about this analysis (what each op costs, what stays in PyTorch and why, "
            "the roofline, the plan), or ask me to optimize (/optimize N in chat) to write and check kernels.")


def _once(analysis: str, messages: list[dict], summary: list[str]) -> str:
    """The analysis in full the first time this conversation gets it; after that its
    heading, the turn that has it, and `summary` (the whole of it was repeated every turn)."""
    said = [i for i, m in enumerate(m for m in messages if m.get("role") == "assistant")
            if analysis in (m.get("content") or "")]
    if not said:
        return analysis
    return "\n".join([HEADING, ""] + summary[:1] + [f"(The full analysis: turn {said[0] + 1}.)"] + summary[1:])


def _problem_line(problem: Problem, device: DeviceInfo) -> str:
    return (f"Problem `{problem.name}` (category {problem.category or 'unknown'}, size {problem.size}) "
            f"on {device.name} ({device.mode.value}).")


def _config_text(config: Config, space: search.Space) -> str:
    return ", ".join(f"{axis}={getattr(config, axis)}" for axis in space.axes) or "(no tunable launch parameters)"


def _search_text(results: list[Result]) -> str:
    if not results:
        return "### Search so far\nNothing evaluated yet."
    rows = []
    for r in results:
        a = r.attempt
        speed = f"{a.runtime_ms:.4g} ms, {a.speedup_vs_eager:.2f}x vs eager" if a.runtime_ms and a.speedup_vs_eager \
            else ("not timed" if a.runtime_ms is None else f"{a.runtime_ms:.4g} ms")
        rows.append(f"- {a.tool} #{a.evaluation_id}: {a.status.value}, {speed}" + (f" ({a.reason[:160]})" if a.reason else ""))
    return "### Search so far\n" + "\n".join(rows)


def _final_text(submit: Attempt, device: DeviceInfo) -> str:
    if not allowed(submit, Use.BEST):
        return (f"### Verdict\nThe final check refused the kernel ({why_not(submit, Use.BEST)}: "
                f"{submit.reason[:200]}); no answer.")
    if device.mode is not Mode.GPU or submit.speedup_vs_eager is None:
        return ("### Verdict\nSubmitted a kernel verified correct. No GPU here: its speed was not measured, so no "
                "speedup is claimed, and nothing more can be learnt by searching here.")
    return f"### Verdict\nSubmitted: {submit.speedup_vs_eager:.2f}x vs eager in the final check."
