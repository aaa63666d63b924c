"""`kernelpilot grader serve`: the grader service (verdicts and rewards over HTTP) for trainers.

    KERNELPILOT_GRADER_TOKEN=... kernelpilot grader serve --host 0.0.0.0 --port 8765 [--gpus all|I,J]
                                 [--cpu] [--sandbox process|docker] [--queue N] [--deadline S]
                                 [--timeout S] [--db URL] [--problems PATH... [--levels 1,2]]

The service is policy_training/grader/ (imported here only when the command runs: it needs
the `grader` extra, FastAPI and uvicorn). The protocol: README "Grader service", or the
running server's /docs.
"""
import argparse
import os
from pathlib import Path

from agent.cli.bench import gpu_indices, lane_devices, parse_levels
from agent.cli.common import EXIT_STATUS_HELP, ExitCode, UsageError, fail, positive_float, positive_int
from agent.runtime import RuntimeOptions
from tools.evaluator import EvalConfig, Protocol
from tools.problems import ProblemError
from tools.sandbox.backends import SandboxKind


def add_arguments(grader: argparse.ArgumentParser) -> None:
    grader.description = ("The grader service: trainers POST a problem and a candidate and get "
                          "the evaluator's verdict and the reward back (policy_training/grader/).")
    verbs = grader.add_subparsers(dest="verb", required=True, metavar="VERB")
    serve = verbs.add_parser(
        "serve", help="serve /v1/grade, /v1/queue and /v1/health (the protocol at /docs)",
        description="Serve the grader over HTTP until Ctrl-C or SIGTERM. Requests need `Authorization: Bearer "
                    "TOKEN`, TOKEN from KERNELPILOT_GRADER_TOKEN (16 characters at least); without it the service "
                    "listens on a loopback host only, with a token made for the run and printed on stderr.",
        epilog=EXIT_STATUS_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                       "than a loopback address needs KERNELPILOT_GRADER_TOKEN)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    serve.add_argument("--gpus", metavar="all|I,J", help="a lane process with its own runtime per listed GPU "
                       "(`all`: every GPU); default: one runtime in this process on --gpu")
    serve.add_argument("--gpu", type=int, default=0, metavar="INDEX", help="CUDA device of the one runtime (default 0)")
    serve.add_argument("--cpu", action="store_true", help="grade in the Triton interpreter even if a GPU is present "
                       "(correctness only: a correct candidate earns the gate alone)")
    serve.add_argument("--lanes", type=positive_int, metavar="N", help="with --cpu: N lane processes in the "
                       "interpreter; with --gpus: N lane processes per GPU, which load and compile candidates at "
                       "once and take turns on the device to measure (default: one runtime in this process; with "
                       "--gpus, one lane per GPU, or with --protocol reward as many as the CPU cores allow, two a "
                       "lane, up to 8)")
    serve.add_argument("--protocol", type=Protocol, choices=list(Protocol), default=Protocol.FULL,
                       help="full: every trial and all timed calls wait for the device; reward: the first trial "
                            "(the candidate's compile) runs while another lane measures, and timing stops once the "
                            "median is known to ±2%% (default full)")
    serve.add_argument("--sandbox", type=SandboxKind, choices=list(SandboxKind), default=SandboxKind.PROCESS,
                       help="where candidates run (default process)")
    serve.add_argument("--queue", type=positive_int, default=64, metavar="N", help="requests that may wait for a "
                       "runtime; more get 429 with Retry-After (default 64)")
    serve.add_argument("--deadline", type=positive_float, default=600.0, metavar="S", help="the longest and default "
                       "deadline of a request, from its arrival to its answer; 504 after (default 600)")
    serve.add_argument("--timeout", type=positive_float, metavar="S", help="wall-clock limit in seconds per "
                       "evaluation step in the sandbox (default: the sandbox's own limits)")
    serve.add_argument("--db", metavar="URL", help="history store (SQLAlchemy URL; default "
                       "$KERNELPILOT_HOME/history.db): every graded candidate is recorded")
    serve.add_argument("--problems", nargs="+", type=Path, default=[], metavar="PATH", help="problem files, "
                       "folders or KernelBench checkouts that requests may name by `problem_id` instead of sending "
                       "a source (GET /v1/problems lists them)")
    serve.add_argument("--levels", default="", metavar="1,2",
                       help="with --problems: the KernelBench levels to take (default: every level found)")


def run(args) -> ExitCode:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: a TCP port is 1-65535")
    try:
        from policy_training.grader.serve import TOKEN_ENV, ServeOptions, TokenError, serve, token_for
        from policy_training.grader.pool import PoolOptions
    except ImportError as error:
        return fail(f"infrastructure error: the grader needs its extra: pip install 'kernelpilot[grader]' ({error})",
                    ExitCode.INFRA)
    try:
        token, made = token_for(args.host, os.environ.pop(TOKEN_ENV, None))   # popped: no child inherits it
    except TokenError as error:
        raise UsageError(str(error)) from None
    if made:
        fail(f"no {TOKEN_ENV} set; this run's token (send `Authorization: Bearer TOKEN`): {token}", ExitCode.OK)
    if args.lanes is None and args.gpus and args.protocol is Protocol.REWARD:
        from policy_training.grader.lanes import default_lanes
        args.lanes = default_lanes(args.protocol.value, os.cpu_count(), gpus=len(gpu_indices(args.gpus)))
    runtime = RuntimeOptions(sandbox=args.sandbox, db=args.db, cuda_index=args.gpu, force_cpu=args.cpu,
                             timeout_s=args.timeout, eval=EvalConfig(protocol=args.protocol, second_size=True))
    pool = PoolOptions(runtime=runtime, devices=lane_devices(args), capacity=args.queue)
    options = ServeOptions(host=args.host, port=args.port, pool=pool, deadline_s=args.deadline,
                           problems=tuple(args.problems), levels=parse_levels(args.levels))
    try:
        serve(options, token)
    except ProblemError as error:       # a --problems path without problems, or one that cannot be read
        raise UsageError(f"--problems: {error}") from None
    return ExitCode.OK

