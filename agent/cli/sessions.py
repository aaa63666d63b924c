"""The session plumbing that `kernelpilot optimize` and `kernelpilot chat` both use: their
arguments, the SessionOptions they fill, and the streamed turns on the terminal."""
from pathlib import Path

from rich.console import Console

from agent.graph import Budget, RunMode, StopReason, best_of
from agent.policy import Backend
from agent.policies import PolicySpec
from agent.session import AgentSession, SessionOptions
from tools.safe_text import clean
from tools.sandbox.backends import SandboxKind

TEXT_LINES = 14


def add_session_arguments(parser) -> None:
    """What `optimize` and `chat` both take: the policy, the kernel language, the sandbox,
    the device, the store, and a session to resume."""
    parser.add_argument("--policy", help="builtin | openai | replay:FILE | local:MODEL_DIR")
    parser.add_argument("--model", help="model name for the openai policy (or KERNELPILOT_MODEL)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (or OPENAI_BASE_URL)")
    parser.add_argument("--backend", type=Backend, choices=list(Backend), default=Backend.TRITON,
                        help="kernel language (default triton)")
    parser.add_argument("--sandbox", type=SandboxKind, choices=list(SandboxKind), default=SandboxKind.PROCESS,
                        help="where candidates run (default process)")
    parser.add_argument("--size", choices=["auto", "full", "small"], default="auto",
                        help="problem size: auto = full on a GPU, the problem's SMALL_SIZES without one")
    parser.add_argument("--cpu", action="store_true", help="use the Triton interpreter even if a GPU is present")
    parser.add_argument("--gpu", type=int, default=0, metavar="INDEX", help="CUDA device index (default 0)")
    parser.add_argument("--db", metavar="URL", help="history store (SQLAlchemy URL; default $KERNELPILOT_HOME/history.db)")
    parser.add_argument("--resume", metavar="SESSION", help="go on with an earlier session (its problem and policy)")


def session_options(args, problem: Path | None, policy: PolicySpec, mode: RunMode, budget: Budget,
                    timeout_s: float | None = None) -> SessionOptions:
    """SessionOptions from the arguments `add_session_arguments` defined."""
    return SessionOptions(problem=problem, policy=policy, backend=args.backend, mode=mode, budget=budget,
                          size=args.size, sandbox=args.sandbox, db=args.db, cuda_index=args.gpu,
                          force_cpu=args.cpu, timeout_s=timeout_s, session_id=args.resume)


def drive(session: AgentSession, state_input, console: Console, conversation: bool = False) -> None:
    """Run the graph, printing each update as it lands (see render_update for `conversation`)."""
    for update in session.stream(state_input):
        for node, change in update.items():
            render_update(console, node, change or {}, conversation)


def render_update(console: Console, node: str, change: dict, conversation: bool = False) -> None:
    """One graph update on the terminal. In a `conversation` (chat) the policy's text is its
    reply to the user, so it is shown whole, and a hand-back to the user goes unsaid; tool
    results are clipped either way."""
    for message in change.get("messages", []):
        if message["role"] == "assistant":
            console.rule(f"turn {change.get('turns', '?')}")
            text = message.get("content") or "(no text)"
            console.print(clean(text).strip() if conversation else clip(text), markup=False)
            for call in message.get("tool_calls", []):
                console.print(f"→ {clean(call['function']['name'])}", style="cyan", markup=False)
        elif message["role"] == "tool":
            console.print(clip(message["content"]), markup=False, style="dim")
        elif message["role"] == "user":
            console.print(f"kernelpilot → policy: {clean(message['content'])}", style="yellow", markup=False)
    best = best_of(change)
    if node == "run_tools" and best:
        speed = f"{best.speedup_vs_eager:.2f}x vs eager" if best.speedup_vs_eager is not None else "untimed"
        console.print(f"best so far: turn {best.turn}, {best.status.value}, {speed}", style="green")
    if change.get("stop") and not (conversation and change["stop"] == StopReason.ASK_USER):
        console.print(f"stop: {change['stop']}", style="bold")


def clip(text: str) -> str:
    """The first TEXT_LINES lines of `text`, cleaned: an assistant's or a tool's message
    quotes candidates and the model."""
    lines = clean(text).strip().splitlines()
    return "\n".join(lines[:TEXT_LINES]) + (f"\n  … {len(lines) - TEXT_LINES} more lines" if len(lines) > TEXT_LINES else "")
