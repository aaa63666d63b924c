"""The built-in policy in a conversation: what the user's last message asks for, and the
answers it can give from its own analysis of the problem.

It has no language model, so it answers by topic: what each op costs, what stays in
PyTorch and why, the roofline, the plan and its stages, how much runs in our kernels, the
results so far, or one op named in the question. A question on none of these gets a plain
"cannot answer" that lists what it can. A request to optimize (the chat's `/optimize`, or
words like "optimize", "make it faster") starts the search; the chat's opening request
gets the analysis alone, with nothing run.

    request, text = request_of(turn_input.messages)
    reply = answer(text, facts)     # when request is Request.QUESTION
"""
import re
from dataclasses import dataclass
from enum import StrEnum

from agent.builtin import ops
from agent.builtin.analysis import (HEADING, Work, flops, fmt, launch_line, nbytes, roofline_line, stage_lines,
                                    work_line)
from agent.builtin.coverage import Coverage
from agent.builtin.ir import OpGraph, OpNode
from agent.builtin.partition import Stage, StageKind
from agent.prompts import ANALYSE_REQUEST, OPTIMIZE_REQUEST, correction
from tools.device import DeviceInfo

COST_LINES = 24
CANNOT = ("I cannot answer that: the built-in policy has no language model, so it answers only from its own "
          "analysis of this problem. Ask what each op costs, what stays in PyTorch and why, what the roofline says, "
          "what the plan fuses, how much runs in our kernels, or how the search went; or name an op of the graph. "
          "Ask me to optimize (/optimize N in chat) to write and check kernels; for open questions use an LLM "
          "policy (--policy openai).")
SEARCH_WORDS = re.compile(r"\b(optimi[sz]e|speed (it )?up|make it faster|go on|continue|keep going|search|"
                          r"write (a |the )?kernels?|try (again|more|another))\b", re.IGNORECASE)


class Request(StrEnum):
    SEARCH = "search"           # write, check and submit kernels
    ANALYSE = "analyse"         # the analysis alone, nothing run (the chat's first turn)
    QUESTION = "question"       # answer from the analysis


@dataclass(frozen=True)
class Facts:
    """What the policy knows about the problem, to answer from."""

    graph: OpGraph                  # the plan's graph (after the rewrites)
    captured: OpGraph               # what eager runs
    stages: tuple[Stage, ...]
    notes: tuple[str, ...]          # the rewrites applied
    work: Work
    device: DeviceInfo
    ceilings: tuple[float, float] | None
    coverage: Coverage
    results: str                    # the search so far, as the turn shows it


def request_of(messages: list[dict]) -> tuple[Request, str]:
    """What the conversation waits on: a user's message last asks something; anything else
    (no conversation, the task, tool results last) is the search going on."""
    if not messages or messages[-1].get("role") != "user":
        return Request.SEARCH, ""
    text = (messages[-1].get("content") or "").strip()
    first_user = next(m for m in messages if m.get("role") == "user")
    if messages[-1] is first_user or text == OPTIMIZE_REQUEST or text.startswith(correction(0).split(".")[0]):
        return Request.SEARCH, text
    if text == ANALYSE_REQUEST:
        return Request.ANALYSE, text
    if SEARCH_WORDS.search(text) and "?" not in text:
        return Request.SEARCH, text
    return Request.QUESTION, text


def answer(question: str, facts: Facts) -> str:
    """The heading the graph requires, then one section per topic the question touches."""
    words = question.lower()
    sections = [text for topic, test in TOPICS if test(words) and (text := topic(facts))]
    sections += [_op_section(node, facts) for node in _named_ops(words, facts)]
    if not sections:
        sections = [CANNOT]
    return f"{HEADING}: {(question.splitlines() or [''])[0][:100]}\n\n" + "\n\n".join(sections)


def _costs(facts: Facts) -> str:
    graph = facts.captured
    ran = [n for n in graph.nodes if n.op not in ("input", "param") and n.op not in ops.VIEWS]
    moved = {n.name: nbytes(n) + sum(nbytes(graph.node(r)) for r in set(n.refs)) for n in ran}
    total = sum(moved.values()) or 1
    ranked = sorted(ran, key=lambda n: -moved[n.name])
    lines = [f"- `{n.name}` ({n.op}): moves {fmt(moved[n.name])}B ({moved[n.name] / total:.0%} of eager's bytes), "
             f"{fmt(flops(n, graph))}FLOP" for n in ranked[:COST_LINES]]
    more = [f"- … {len(ranked) - COST_LINES} more ops"] if len(ranked) > COST_LINES else []
    return ("### What each op costs in eager (each reads its inputs and writes its output)\n"
            + "\n".join(lines + more) + "\n" + work_line(facts.work))


def _kept(facts: Facts) -> str:
    kept = facts.coverage.kept
    if not kept:
        return f"### What stays in PyTorch\nNothing: every op runs in our Triton kernels ({facts.coverage.kernels} " \
               "kernel(s))."
    lines = [f"- `{k.name}` ({k.label}): {k.reason}; about {k.share:.0%} of the forward's estimated time"
             for k in kept]
    return "### What stays in PyTorch, and why\n" + "\n".join(lines) + "\n" + facts.coverage.line()


def _roofline(facts: Facts) -> str:
    stages = list(facts.stages)
    lines = [roofline_line(facts.work, facts.device, facts.ceilings), launch_line(facts.work, facts.ceilings, stages)]
    lines += stage_lines(facts.graph, stages, facts.ceilings)
    if facts.ceilings is None:
        lines.append("(Each stage's bound uses about an H100's fp32 ridge, 10 FLOP/B, since none was measured.)")
    return "### The roofline\n" + "\n".join(lines)


def _plan(facts: Facts) -> str:
    lines = stage_lines(facts.graph, list(facts.stages), facts.ceilings)
    lines += [f"- rewrite: {note}" for note in facts.notes]
    return "### The plan\n" + "\n".join(lines) + "\n" + work_line(facts.work)


def _results(facts: Facts) -> str:
    return facts.results


def _coverage(facts: Facts) -> str:
    return "### How much runs in our kernels\n" + facts.coverage.line()


def _has(*words: str):
    pattern = re.compile(r"\b(" + "|".join(words) + r")")
    return lambda text: bool(pattern.search(text))


TOPICS = (
    (_costs, _has("cost", "expensive", "bytes", "flop", "traffic", "slow", "where does the time", "time go")),
    (_kept, _has("pytorch", "torch", "kept", "keep", "stay", "fall ?back", "cublas", "cudnn", "library")),
    (_roofline, _has("roofline", "bound", "intensity", "ridge", "bandwidth", "floor", "memory", "compute")),
    (_plan, _has("plan", "stage", "fuse", "fusion", "kernels? (do|will|would)", "launch")),
    (_coverage, _has("coverage", "how much", "what fraction", "what share", "percent")),
    (_results, _has("best", "result", "speedup", "correct", "submit", "verdict", "so far", "measured", "status")),
)


def _named_ops(words: str, facts: Facts) -> list[OpNode]:
    """Ops of the graph the question names (by node name, op or the call the reference wrote)."""
    tokens = set(re.findall(r"[a-z_][a-z0-9_]{2,}", words))
    named = []
    for node in facts.captured.nodes:
        names = {node.name, node.op} | ({node.kept.template.split("(")[0].split(".")[-1]} if node.kept else set())
        if node.op not in ("input", "param") and tokens & {n.lower() for n in names}:
            named.append(node)
    return named[:4]


def _op_section(node: OpNode, facts: Facts) -> str:
    """Where `node` of the captured graph runs in the plan, and why."""
    head = f"### `{node.name}` ({node.op})"
    notes = [n for n in facts.notes if n.startswith(f"{node.name}:")]
    stage = next((i for i, s in enumerate(facts.stages) if node.name in s.names), None)
    if stage is None:
        where = "it is rewritten before planning" if notes else "it is a view or folded away: no data moved"
    else:
        s = facts.stages[stage]
        if s.kind is StageKind.TORCH and s.anchor.name == node.name:
            where = f"stays in PyTorch as the reference wrote it: {s.reason or 'no built-in plan'}"
        else:
            where = f"runs in stage {stage + 1}: " + stage_lines(facts.graph, list(facts.stages), facts.ceilings)[stage]
    return "\n".join([head, where] + [f"- rewrite: {n}" for n in notes])
