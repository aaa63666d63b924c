"""agent/cli/common.py and agent/cli/sessions.py in process: the one-line error and its exit code, the argument types,
the SessionOptions the session flags fill, and what a streamed update prints (cleaned, clipped,
the best so far, the stop). The exit codes from real failures through the CLI are in
tests/test_cli.py, tests/test_cli_store_failures.py and tests/test_contract_exit_codes.py."""
import argparse
from pathlib import Path

import pytest
from rich.console import Console

from agent.cli.common import ExitCode, fail, indented, positive_float, positive_int
from agent.cli.sessions import TEXT_LINES, add_session_arguments, clip, render_update, session_options
from agent.graph import Budget, RunMode
from agent.policies import PolicyKind, PolicySpec
from agent.policy import Attempt, Backend
from tools.records import EvalStatus
from tools.sandbox.backends import SandboxKind

ESC = "\x1b"
HELP_SNAPSHOT = Path(__file__).parent / "snapshots" / "session_arguments_help.txt"


def test_fail_prints_one_cleaned_line_and_returns_its_code(capsys):
    assert fail(f"no store {ESC}[31mhere{ESC}[0m", ExitCode.INFRA) is ExitCode.INFRA
    err = capsys.readouterr().err
    assert err.startswith("kernelpilot: no store ") and err.endswith("here\n") and ESC not in err


def test_indented_puts_later_lines_under_the_first():
    assert indented("a\nb\nc", 4) == "a\n    b\n    c"
    assert ESC not in indented(f"x{ESC}[2J\ny", 2) and indented("one", 8) == "one"


@pytest.mark.parametrize("parse, good, bad, message", [
    (positive_int, ("1", 1), "0", "must be at least 1"),
    (positive_float, ("0.5", 0.5), "0", "must be positive"),
])
def test_argument_types(parse, good, bad, message):
    assert parse(good[0]) == good[1]
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse(bad)
    assert str(refused.value) == message
    with pytest.raises(ValueError):
        parse("many")


def test_positive_float_takes_a_small_positive_number():
    assert positive_float("1e-9") == 1e-9
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float("-1")


def parsed(*argv: str):
    parser = argparse.ArgumentParser()
    add_session_arguments(parser)
    return parser.parse_args(list(argv))


def test_session_arguments_fill_session_options():
    args = parsed("--backend", "cuda", "--sandbox", "docker", "--size", "small", "--cpu", "--gpu", "3", "--db",
                  "sqlite:///x.db", "--resume", "s-1")
    budget, policy = Budget(max_turns=3), PolicySpec(PolicyKind.OPENAI, model="m")
    options = session_options(args, Path("p.py"), policy, RunMode.CHAT, budget, timeout_s=7.0)
    assert (options.problem, options.policy, options.backend, options.mode, options.budget) == \
        (Path("p.py"), policy, Backend.CUDA, RunMode.CHAT, budget)
    assert (options.size, options.sandbox, options.db, options.cuda_index, options.force_cpu, options.timeout_s,
            options.session_id) == ("small", SandboxKind.DOCKER, "sqlite:///x.db", 3, True, 7.0, "s-1")


def test_every_session_flag_parses_to_its_type():
    args = parsed("--policy", "replay:s.json", "--model", "m", "--base-url", "http://h/v1", "--backend", "cuda",
                  "--sandbox", "docker")
    assert (args.policy, args.model, args.base_url) == ("replay:s.json", "m", "http://h/v1")
    assert type(args.backend) is Backend and type(args.sandbox) is SandboxKind
    assert [parsed("--size", size).size for size in ("auto", "full", "small")] == ["auto", "full", "small"]
    for flag, value in (("--backend", "rust"), ("--sandbox", "vm"), ("--gpu", "one")):
        with pytest.raises(SystemExit):
            parsed(flag, value)


def test_the_session_flags_help_is_the_documented_one():
    """What `optimize --help` and `chat --help` say of the shared flags (update the snapshot
    on purpose: it is the user's documentation)."""
    parser = argparse.ArgumentParser(prog="kernelpilot", add_help=False,
                                     formatter_class=lambda prog: argparse.HelpFormatter(prog, width=120))
    add_session_arguments(parser)
    assert parser.format_help() == HELP_SNAPSHOT.read_text()


def test_session_argument_defaults():
    args = parsed()
    assert (args.backend, args.sandbox, args.size, args.cpu, args.gpu, args.db, args.resume, args.policy) == \
        (Backend.TRITON, SandboxKind.PROCESS, "auto", False, 0, None, None, None)
    with pytest.raises(SystemExit):
        parsed("--size", "huge")


def test_clip_keeps_the_first_lines_and_counts_the_rest():
    text = "\n".join(f"line {n}" for n in range(TEXT_LINES + 6))
    assert clip(text) == "\n".join(f"line {n}" for n in range(TEXT_LINES)) + "\n  … 6 more lines"
    exactly = "\n".join(f"line {n}" for n in range(TEXT_LINES))
    assert clip(f"  \n{exactly}\n\n") == exactly


def rendered(node: str, change: dict) -> str:
    console = Console(width=200, record=True, force_terminal=False, color_system=None)
    with console.capture() as captured:
        render_update(console, node, change)
    return captured.get()


def test_render_update_prints_the_turn_its_calls_the_replies_and_the_stop():
    out = rendered("policy_turn", {"turns": 2, "stop": "turn_budget", "messages": [
        {"role": "assistant", "content": "## Performance analysis\nplan", "tool_calls": [
            {"function": {"name": "benchmark", "arguments": "{}"}}]},
        {"role": "tool", "content": f"benchmark: correct{ESC}[2J"},
        {"role": "user", "content": "Your reply did not begin with the analysis."}]})
    assert "turn 2" in out and "## Performance analysis\nplan" in out and "→ benchmark" in out
    assert "benchmark: correct" in out and ESC not in out
    assert "kernelpilot → policy: Your reply did not begin with the analysis." in out
    assert out.rstrip().endswith("stop: turn_budget")
    assert rendered("policy_turn", {"messages": [{"role": "assistant", "content": None}]}).splitlines()[1:] == \
        ["(no text)"]
    assert "turn ?" in rendered("policy_turn", {"messages": [{"role": "assistant", "content": "x"}]})


def test_untrusted_text_is_never_read_as_rich_markup():
    markup = "[bold red]fake verdict[/bold red] [link=http://x]y[/link]"
    out = rendered("run_tools", {"messages": [
        {"role": "assistant", "content": markup, "tool_calls": [{"function": {"name": markup, "arguments": "{}"}}]},
        {"role": "tool", "content": markup}, {"role": "user", "content": markup}]})
    assert out.count(markup) == 4


def styled(node: str, change: dict) -> str:
    console = Console(width=200, force_terminal=True, color_system="standard")
    with console.capture() as captured:
        render_update(console, node, change)
    return captured.get()


def test_each_kind_of_line_keeps_its_style():
    """Model text plain, our notes coloured, tool output dim: a reader tells them apart."""
    out = styled("run_tools", {"stop": "turn_budget", "best": best(1.5), "messages": [
        {"role": "assistant", "content": "plan", "tool_calls": [{"function": {"name": "compile", "arguments": "{}"}}]},
        {"role": "tool", "content": "compile: ok"}, {"role": "user", "content": "note"}]})
    assert "\n\x1b[36m→ compile\x1b[0m" in out                              # cyan
    assert "\n\x1b[2mcompile: ok\x1b[0m" in out                             # dim
    assert "\n\x1b[33mkernelpilot → policy: note\x1b[0m" in out             # yellow
    assert "\n\x1b[32mbest so far: turn " in out                              # green (numbers highlighted)
    assert "\n\x1b[1mstop: turn_budget\x1b[0m" in out                       # bold
    assert "\nplan\n" in out


def best(speedup):
    return Attempt(turn=3, tool="benchmark", evaluation_id=1, code="", status=EvalStatus.CORRECT, runtime_ms=None,
                   speedup_vs_eager=speedup, speedup_vs_compile=None).to_state()


def test_render_update_prints_the_best_only_after_tools():
    assert "best so far: turn 3, correct, 1.50x vs eager" in rendered("run_tools", {"best": best(1.5)})
    assert "best so far: turn 3, correct, untimed" in rendered("run_tools", {"best": best(None)})
    assert "best so far" not in rendered("policy_turn", {"best": best(1.5)})
    assert rendered("run_tools", {"best": None}) == ""
