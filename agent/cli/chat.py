"""`kernelpilot chat`: a terminal conversation with the agent about slow code.

Name a problem (`/problem FILE [NAME]`: a KernelBench-format file, or any file plus the
nn.Module class or function in it that is slow, next to `get_inputs()` and
`get_init_inputs()`), or paste one between ``` lines. The agent first gives its analysis
of where the time goes and runs nothing; then talk: each message runs the agent until the
policy hands back to you, with every tool result shown. Slash commands (`/help` lists
them):

    /problem FILE [NAME]   the code to work on        /optimize [N]  let the agent search N turns (8)
    /best                  the best kernel so far      /save [PATH]   write it to a file
    /history               this session's kernels, and earlier ones for this problem
    /resume ID             go back to an earlier session       /quit   leave (Ctrl-D too)

Ctrl-C stops the turn under way, not the conversation; every session is checkpointed and
resumable by its id (also `kernelpilot chat --resume ID`).
"""
import argparse
import ast
import contextlib
import hashlib
import re
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from agent.cli.common import ExitCode, indented, positive_int
from agent.cli.sessions import add_session_arguments, drive, session_options
from agent.errors import CheckpointError, PolicyError, SessionError
from agent.graph import Budget, RunMode, attempts_of, best_of, tool_message
from agent.policy import Attempt
from agent.prompts import ANALYSE_REQUEST, OPTIMIZE_REQUEST
from agent.runtime import Runtime
from agent.policies import PolicySpec
from agent.session import AgentSession, SessionOptions, resolve
from tools.history import HistoryError
from tools.home import HomeError, kernelpilot_home
from tools.problems import ProblemError
from tools.safe_text import clean
from tools.sandbox.contracts import SandboxError

PROMPT = "you> "
COMMANDS = {
    "/problem FILE [NAME]": "the code to work on: a KernelBench-format file, or a file and the class or function in it",
    "```": "paste code (end with a line of ```) to work on it",
    "/optimize [N]": "let the agent write, check and submit kernels for N turns at most (default 8)",
    "/best": "the best kernel so far (the trust rules' pick) and its source",
    "/save [PATH]": "write the best kernel to PATH (default: next to the problem file)",
    "/history": "this session's kernels with their verdicts, then earlier ones for this problem",
    "/resume ID": "go back to an earlier session (`kernelpilot history sessions` lists them)",
    "/help": "this list",
    "/quit": "leave (Ctrl-D too); Ctrl-C stops only the turn under way",
}


class Chat:
    def __init__(self, options: SessionOptions, console: Console, turns_per_message: int = 4):
        self.options, self.console, self.turns_per_message = options, console, turns_per_message
        self.stack = contextlib.ExitStack()
        self.runtime: Runtime | None = None
        self.session: AgentSession | None = None

    def loop(self, read=input) -> None:
        self.console.print("kernelpilot chat — /problem FILE to begin, /quit to leave", style="bold")
        try:
            if self.options.problem:
                self.start(self.options)
            elif self.options.session_id:
                self.open(self.options)
            while True:
                try:
                    line = read(PROMPT)
                except EOFError:
                    break
                except KeyboardInterrupt:
                    self.console.print("\n(Ctrl-C stops a running turn; /quit leaves)")
                    continue
                if line.strip() in ("/quit", "/exit"):
                    break
                if line.strip():
                    self.handle(line, read)
        finally:
            self.stack.close()      # the sandbox's workers die with the conversation, however it ends

    def handle(self, line: str, read) -> None:
        command, _, rest = line.strip().partition(" ")
        actions = {"/problem": self.set_problem, "/optimize": self.optimize, "/best": self.best,
                   "/save": self.save, "/history": self.history, "/resume": self.resume, "/help": self.help}
        try:
            if line.strip().startswith("```"):
                self.paste(read)
            elif command in actions:
                actions[command](rest.strip())
            elif command.startswith("/"):
                self.console.print(f"unknown command {command}; /help lists the commands", markup=False)
            else:
                self.say(line.strip())
        except (ProblemError, PolicyError, SessionError, SandboxError, HistoryError, CheckpointError, HomeError,
                OSError) as error:
            self.console.print(f"error: {clean(str(error))}", style="red", markup=False)
        except (KeyboardInterrupt, EOFError):
            self.console.print("\n(stopped)", style="yellow")

    # ---- sessions -------------------------------------------------------------------------

    def open(self, options: SessionOptions) -> None:
        """A session on the conversation's one runtime (opened with the first problem, kept to the end)."""
        self.session = None
        if self.runtime is None:
            # The fork server imports torch and Triton, the device is probed: seconds, said first.
            self.console.print("starting the sandbox and the device…", style="dim")
            self.runtime = self.stack.enter_context(Runtime.open(options.runtime_options()))
        options, resumed = resolve(options, self.runtime.graph)
        policy = options.policy.build(self.runtime.store, options.budget)
        self.session = AgentSession.open(self.runtime, options, policy, resumed=resumed)
        if self.session.resumed and self.session.cut_mid_run():
            self.close_cut_run()
        problem = self.session.context.toolbox.problem
        self.console.print(f"session {self.session.id}: {problem.name} ({problem.size} size) on "
                           f"{self.session.context.device.name}, policy {self.session.context.policy.name}")

    def set_problem(self, rest: str) -> None:
        if not rest:
            return self.console.print("usage: /problem FILE [NAME]")
        path_text, _, name = rest.partition(" ")
        path = Path(path_text).expanduser()
        if name.strip():
            path = wrap_problem(path, name.strip())
        self.start(replace(self.options, problem=path, session_id=None))

    def start(self, options: SessionOptions) -> None:
        """A new session on `options.problem`, and its first turn: the policy's analysis of
        where the time goes, asked for with nothing run (the graph's first input holds the
        problem, the backend and the system prompt, so nothing else may come first)."""
        self.open(options)
        first = self.session.start_state()
        if not self.session.resumed:
            first = {**first, "messages": first["messages"] + [{"role": "user", "content": ANALYSE_REQUEST}]}
        self.run_graph(first, turns=1)

    def paste(self, read) -> None:
        lines = []
        while (line := read("... ")).strip() != "```":
            lines.append(line)
        folder = kernelpilot_home() / "pasted"
        folder.mkdir(parents=True, exist_ok=True)
        text = "\n".join(lines) + "\n"
        path = folder / f"pasted_{hashlib.sha256(text.encode()).hexdigest()[:10]}.py"
        path.write_text(text)
        self.console.print(f"saved the pasted code as {path}")
        self.set_problem(str(path))

    def resume(self, session_id: str) -> None:
        if not session_id:
            return self.console.print("usage: /resume SESSION_ID")
        self.open(replace(self.options, problem=None, session_id=session_id))

    # ---- turns ----------------------------------------------------------------------------

    def say(self, text: str, turns: int | None = None) -> None:
        if self.session is None:
            return self.console.print("no problem yet: /problem FILE (or paste code between ``` lines)")
        self.run_graph({"messages": [{"role": "user", "content": text}], "stop": None}, turns)

    def optimize(self, rest: str) -> None:
        if rest and not (rest.isdigit() and int(rest) > 0):
            return self.console.print("usage: /optimize [N]   (N turns at most; default 8)")
        self.say(OPTIMIZE_REQUEST, turns=int(rest) if rest else 8)

    def run_graph(self, state_input, turns: int | None = None) -> None:
        session = self.session
        if state_input is None:
            state_input = session.start_state()
        done = session.state().get("turns", 0)
        session.context.budget = replace(session.context.budget, max_turns=done + (turns or self.turns_per_message))
        session.config["recursion_limit"] = 2 * (turns or self.turns_per_message) + 10
        try:
            drive(session, state_input, self.console, conversation=True)
        except KeyboardInterrupt:
            self.interrupted()

    def close_cut_run(self) -> None:
        """Settle a resumed session whose last run was cut, before the user's message goes in as
        new input (which drops the writes of a step saved without the checkpoint that applies
        them: kill -9 between the two commits). Streaming None applies such writes and runs no
        node: a resume passes the breakpoints of its first step, whose tasks all have writes,
        and stops before the next. A step with a task that has no writes is not streamed (that
        task would run): it is the cut turn, closed as Ctrl-C closes one, its calls not run."""
        session = self.session
        if not session.graph.get_state(session.config).next:
            for _ in session.graph.stream(None, session.config, context=session.context, interrupt_before="*"):
                pass
        if session.graph.get_state(session.config).next:
            self.interrupted()      # a turn left unfinished: its pending tool calls answered, control to the user

    def interrupted(self) -> None:
        """Close the cut turn in the checkpoint: its pending calls answered, control back to the user."""
        state = self.session.state()
        answers = [tool_message(call["id"], "interrupted by the user") for call in state.get("pending", [])]
        self.session.graph.update_state(self.session.config, {"messages": answers, "pending": [], "stop": "ask_user"},
                                        as_node="run_tools")
        self.console.print("\ninterrupted: the turn was stopped; the session goes on", style="yellow")

    # ---- results --------------------------------------------------------------------------

    def best(self, _: str = "") -> None:
        best = self.session and best_of(self.session.state())
        if not best:
            return self.console.print("no correct kernel yet")
        self.console.print(f"best: turn {best.turn} ({best.tool}), {best.status.value}, {_speed(best)}")
        self.console.print(clean(best.code), markup=False, highlight=False)

    def save(self, rest: str) -> None:
        best = self.session and best_of(self.session.state())
        if not best:
            return self.console.print("no correct kernel to save yet")
        problem = self.session.context.toolbox.problem.path
        path = Path(rest).expanduser() if rest else problem.with_name(f"{problem.stem}_kernelpilot.py")
        path.write_text(best.code)
        self.console.print(f"saved the best kernel (class ModelNew) to {path}")

    def history(self, _: str = "") -> None:
        """This session's attempts and its best (what /best shows), then the store's view of
        the problem (what the speedup_history tool gives the policy)."""
        if self.session is None:
            return self.console.print("no problem yet")
        state = self.session.state()
        attempts = attempts_of(state)
        self.console.print(f"this session ({self.session.id}): {len(attempts)} evaluation(s)", markup=False)
        for a in attempts:
            self.console.print(f"  turn {a.turn} {a.tool} #{a.evaluation_id}: {a.status.value}, {_speed(a)}"
                               + (" (submitted)" if a.evaluation_id == state.get("submitted") else ""), markup=False)
        best = best_of(state)
        self.console.print(f"  best: turn {best.turn} ({best.tool}), {best.status.value}, {_speed(best)}" if best
                           else "  best: none yet (no correct kernel the trust rules allow)", markup=False)
        self.console.print("the history store, all sessions:", markup=False)
        text = self.session.context.toolbox.call("speedup_history", {"k": 3}).text()
        self.console.print(indented("  " + text, 2), markup=False)

    def help(self, _: str = "") -> None:
        width = max(map(len, COMMANDS))
        for command, meaning in COMMANDS.items():
            self.console.print(f"  {command:<{width}}  {meaning}", markup=False, highlight=False)
        self.console.print("Anything else is a message to the agent.", markup=False)


def _speed(attempt: Attempt) -> str:
    return f"{attempt.speedup_vs_eager:.2f}x vs eager" if attempt.speedup_vs_eager is not None else "not timed"


def wrap_problem(path: Path, name: str) -> Path:
    """A problem file around the named nn.Module class or function of a user's file."""
    source = path.read_text()
    if not re.search(rf"^(class|def)\s+{re.escape(name)}\b", source, re.MULTILINE):
        raise ProblemError(f"{path}: no class or function named {name}")
    if re.search(rf"^class\s+{re.escape(name)}\b", source, re.MULTILINE):
        tail = f"\n\nModel = {name}\n"
    else:
        params = ", ".join(parameters(source, name))
        tail = (f"\n\nimport torch.nn as _nn\n\n\nclass Model(_nn.Module):\n    def forward(self, {params}):\n"
                f"        return {name}({params})\n")
    # Two files of the same name must not share a wrapper (a resumed session would load the other).
    tag = hashlib.sha256(f"{path.resolve()}\n{source}".encode()).hexdigest()[:10]
    wrapped = kernelpilot_home() / "wrapped" / f"{path.stem}_{name}_{tag}.py"
    wrapped.parent.mkdir(parents=True, exist_ok=True)
    wrapped.write_text(source + tail)
    return wrapped


def parameters(source: str, name: str) -> list[str]:
    """The positional parameters of function `name`, so the wrapper's forward reads as the
    user wrote it; `*args` where it takes more than plain positional ones."""
    fn = next((n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    if fn is None or fn.args.vararg or fn.args.kwonlyargs or fn.args.kwarg:
        return ["*args"]
    return [a.arg for a in fn.args.posonlyargs + fn.args.args]


def add_arguments(chat: argparse.ArgumentParser) -> None:
    chat.description = ("A terminal conversation: name or paste the slow code, ask where the time goes, let the agent "
                        "propose and verify kernels, save the best. Commands: /problem FILE [NAME], "
                        "/optimize [N], /best, /save [PATH], /history, /resume ID, /help, /quit. Ctrl-C stops a turn.")
    chat.epilog = "The policy is chosen as for `optimize` (--policy builtin|openai|replay:FILE)."
    chat.add_argument("problem", type=Path, nargs="?", help="a problem file to start with")
    chat.add_argument("name", nargs="?", help="the nn.Module class or function in it to speed up")
    add_session_arguments(chat)
    chat.add_argument("--turns", type=positive_int, default=4, help="policy turns at most per message (default 4)")


def run(args) -> ExitCode:
    problem = wrap_problem(args.problem, args.name) if args.problem and args.name else args.problem
    options = session_options(args, problem, PolicySpec.parse(args.policy, args.model, args.base_url),
                              RunMode.CHAT, Budget(patience=None))
    Chat(options, Console(soft_wrap=True, highlight=False), turns_per_message=args.turns).loop()
    return ExitCode.OK
