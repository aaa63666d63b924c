"""`kernelpilot`: the command line (the console script `agent.cli:main`; `python -m agent.cli` too).

    kernelpilot eval PROBLEM.py CANDIDATE.py [--json] ...      eval.py
    kernelpilot history list | show ID | best PROBLEM.py | export     history.py
    kernelpilot optimize PROBLEM.py [--policy ...]             optimize.py
    kernelpilot chat [FILE [NAME]]                             chat.py
    kernelpilot sandbox build | check                          sandbox.py
    kernelpilot bench PROBLEMS... | bench report DIR           bench.py
    kernelpilot grader serve [--host H --port P ...]           grader.py (policy_training/grader/, lazily)
    kernelpilot train collect | export | sft [--config F]      train.py (policy_training/commands.py; the
                                                               training libraries only when a stage runs)
                                                               main.py: the registry of these commands (only
                                                               the one named is imported), the parser, dispatch
                                                               common.py: exit codes, argument types
                                                               sessions.py: what optimize and chat share

Exit codes (`ExitCode` in common.py; main.py turns errors into them, one line on stderr,
never a traceback):

    0    OK           the evaluation or run finished, whatever the verdict
    2    USAGE        a bad command line, a missing candidate file, an unknown history id
    3    PROBLEM      an unusable problem file
    4    INFRA        the sandbox could not start, the history store or disk failed
                      (also `sandbox check` when the image this machine needs is missing)
    5    POLICY       the policy cannot go on (endpoint down, key refused, unknown model)
    130  INTERRUPTED  Ctrl-C (an agent session goes on with `--resume ID`)
    143  TERMINATED   SIGTERM, after the sandbox's children are killed
"""
from agent.cli.main import main

__all__ = ["main"]
