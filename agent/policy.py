"""What a policy is: given where the optimization stands, the next assistant turn.

Every policy (`openai`, `builtin`, `replay`) implements `Policy.turn`. A turn is text
that must open with a `Performance analysis` section (what bounds the current best,
bytes and FLOPs, the roofline position, what the history shows, the plan), followed
by tool calls in the OpenAI function-calling shape. The graph (`agent/graph.py`)
refuses to run the tool calls of a turn whose text lacks the analysis.

    turn = policy.turn(TurnInput(problem, Backend.TRITON, device, messages, Toolbox.schemas(), attempts))
"""
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from tools.device import DeviceInfo
from tools.problems import Problem
from tools.records import EvalStatus

ANALYSIS_HEADING = re.compile(r"^\s*(?:#{1,6}\s*|\*\*)?performance analysis\b", re.IGNORECASE)
FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)   # a fenced block: (language, code)


class Backend(StrEnum):
    TRITON = "triton"
    CUDA = "cuda"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str              # the JSON text exactly as the policy wrote it (it may be malformed)


@dataclass(frozen=True)
class PolicyTurn:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    tokens: int = 0             # prompt + completion tokens this turn cost (0 where nothing is counted)


@dataclass(frozen=True)
class Attempt:
    """One evaluated candidate of this session, as the policy sees it."""

    turn: int
    tool: str
    evaluation_id: int
    code: str
    status: EvalStatus
    runtime_ms: float | None
    speedup_vs_eager: float | None
    speedup_vs_compile: float | None
    flags: tuple[str, ...] = ()
    reason: str = ""
    second_size: str = ""       # what a check at a second size set said ('' where none ran)

    def to_state(self) -> dict:
        """The JSON form kept in the session's checkpoint."""
        return {**asdict(self), "status": self.status.value, "flags": list(self.flags)}

    @staticmethod
    def from_state(saved: dict) -> "Attempt":
        return Attempt(**{**saved, "status": EvalStatus(saved["status"]), "flags": tuple(saved["flags"])})


@dataclass(frozen=True)
class TurnInput:
    problem: Problem
    backend: Backend
    device: DeviceInfo
    messages: list[dict]        # the conversation so far, OpenAI chat format, system prompt first
    tools: list[dict]           # the function-calling schemas (Toolbox.schemas())
    attempts: list[Attempt] = field(default_factory=list)
    turn: int = 0


class Policy(Protocol):
    name: str                   # "openai", "builtin", "replay"
    model: str                  # the model name recorded as the candidates' origin

    def turn(self, turn_input: TurnInput) -> PolicyTurn: ...


def has_analysis(text: str) -> bool:
    """Does the turn open with a `Performance analysis` section (a heading on its first non-empty line)?"""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return bool(ANALYSIS_HEADING.match(first))


def python_blocks(text: str) -> list[str]:
    """The code of each fenced block tagged python (or py), in order: where a turn's kernel is."""
    return [code for language, code in FENCE.findall(text) if language.lower() in ("python", "py")]
