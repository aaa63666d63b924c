"""Run the grader service: open the pool, then serve the app with uvicorn until stopped.

    kernelpilot grader serve --host 127.0.0.1 --port 8765 [--gpus all|I,J] [--cpu] [--queue N]
                             [--problems PATH... [--levels 1,2]] ...

The token comes from KERNELPILOT_GRADER_TOKEN (16 characters at least). Without one the
service listens on a loopback address only, with a token made for this run and printed
once on stderr; a non-loopback host without one is refused (`token_for`). The lanes open
before the port does: /v1/health answers only once a runtime is ready.
"""
import ipaddress
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from policy_training.grader.app import Settings, create_app
from policy_training.grader.catalog import Catalog
from policy_training.grader.pool import GraderPool, PoolOptions

TOKEN_ENV = "KERNELPILOT_GRADER_TOKEN"
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("localhost",)


class TokenError(ValueError):
    """The token cannot protect this service (missing for another machine's reach, too short)."""


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    pool: PoolOptions
    deadline_s: float = 600.0
    problems: tuple[Path, ...] = ()         # what `problem_id` may name (files, folders, KernelBench checkouts)
    levels: frozenset[int] = frozenset()    # of the KernelBench checkouts among them (empty: all)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False        # a name: it may resolve to any interface


def token_for(host: str, given: str | None) -> tuple[str, bool]:
    """The token and whether it was made here (the first time a caller has to be told it)."""
    if given is not None and given.strip():
        if len(given.strip()) < MIN_TOKEN_CHARS:
            raise TokenError(f"{TOKEN_ENV} is too short: {MIN_TOKEN_CHARS} characters at least "
                             "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return given.strip(), False
    if not is_loopback(host):
        raise TokenError(f"--host {host} is not a loopback address: set {TOKEN_ENV} (the grader serves "
                         "other machines only behind a token)")
    return secrets.token_urlsafe(32), True


def serve(options: ServeOptions, token: str) -> None:
    """Serve until SIGINT or SIGTERM; the pool closes after the server stops. A bad `--problems`
    path fails (ProblemError) before any runtime opens."""
    catalog = Catalog.of(list(options.problems), options.levels) if options.problems else None
    with GraderPool.open(options.pool) as pool:
        app = create_app(pool, Settings(token=token, deadline_s=options.deadline_s), catalog)
        # Connections beyond this get uvicorn's 503 before any handler runs (a flood of idle sockets).
        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="info", server_header=False,
                                limit_concurrency=max(256, 4 * options.pool.capacity), timeout_graceful_shutdown=5)
        print(f"kernelpilot grader: {len(pool.lanes)} runtime(s): "
              + ", ".join(f"{d.device} ({d.mode}, {d.sandbox} sandbox)" for d, _ in pool.devices())
              + (f"; {len(catalog.known)} problem(s) by id" if catalog else "")
              + f"; the protocol: http://{options.host}:{options.port}/docs", file=sys.stderr, flush=True)
        uvicorn.Server(config).run()
