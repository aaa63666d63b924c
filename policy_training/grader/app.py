"""The grader's HTTP app (FastAPI): verdicts and rewards for a training cluster.

    app = create_app(pool, Settings(token=token, deadline_s=600))     # serve.py runs it with uvicorn

Routes (the protocol in full: DESCRIPTION below, also the OpenAPI page at /docs):
    GET  /v1/health     no token; 200 while a runtime is alive, else 503
    GET  /v1/queue      depth, capacity, in flight, and what went through (QueueState)
    GET  /v1/problems   the problems `problem_id` may name (those of `--problems`; catalog.py)
    POST /v1/grade      GradeRequest -> GradeResponse

`Guard` runs before routing and parsing: a request without the token never has its body read,
and a body over the limit is refused by its Content-Length (or as it arrives) before any JSON
is parsed. Every error answer is one line in `{"detail": ...}`; nothing a client sends crashes
the service (an unexpected error of ours is a 500 with its traceback in the server's log).
"""
import asyncio
import json
import secrets
from dataclasses import dataclass

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from policy_training.grader.catalog import Catalog
from policy_training.grader.lanes import Job, problem_folder
from policy_training.grader.pool import INFRA, Graded, GraderPool, PoolClosed, QueueFull
from policy_training.grader.protocol import (MAX_BODY_BYTES, ErrorBody, GradeRequest, GradeResponse, Health,
                                             KnownProblem, LaneInfo, QueueState)
from tools.problems import ProblemError
from tools.version import own_version

OPEN_PATHS = frozenset({"/v1/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BODY_READ_S = 30.0
DETAIL_CHARS = 1000
DESCRIPTION = """\
POST a problem (its source, or the `problem_id` of one the grader was started with: GET /v1/problems)
and a candidate's source; get the evaluator's verdict and its RL reward.
Every route but `/v1/health` and these pages needs `Authorization: Bearer <KERNELPILOT_GRADER_TOKEN>`.

| status | when |
|---|---|
| 200 | graded: `status`, `flags`, `reward` (null: leave the sample out, our side's fault), `kind`, `result` |
| 400 | a Content-Length that is not a number, or a body that cannot be parsed at all (nested too deep) |
| 401 | the token is missing or wrong |
| 408 | the body did not arrive within 30 s |
| 413 | the body is over 1 MiB (checked before parsing) |
| 422 | the body is not a valid GradeRequest (each source at most 256 KiB), its problem cannot be used, or \
its `problem_id` is unknown |
| 429 | the queue is full: retry after `Retry-After` seconds |
| 503 | the grader's infrastructure failed (no verdict; retry after `Retry-After`), or it is stopping |
| 504 | no verdict within `deadline_s`; `started` false: it was taken off the queue, never graded; \
`started` true: it runs to its end and is recorded in the history store, but this request gets no reward |
"""


@dataclass(frozen=True)
class Settings:
    token: str
    deadline_s: float = 600.0           # the longest and the default `deadline_s` of a request
    max_body_bytes: int = MAX_BODY_BYTES


def authorized(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class Guard:
    """ASGI middleware: the token (401) on every path but OPEN_PATHS, then the body's size (413)
    and arrival time (408), all before the app routes or parses anything."""

    def __init__(self, app, token: str, max_body_bytes: int):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if scope["path"] not in OPEN_PATHS and not authorized(headers.get("authorization"), self.token):
            return await respond(send, 401, "missing or wrong token: send Authorization: Bearer "
                                            "<KERNELPILOT_GRADER_TOKEN>", {"www-authenticate": "Bearer"})
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            return await respond(send, 400, "Content-Length is not a number")
        if declared is not None and int(declared) > self.max_body_bytes:
            return await respond(send, 413, f"the body is {declared} bytes; at most {self.max_body_bytes}")
        try:
            body = await asyncio.wait_for(read_body(receive, self.max_body_bytes), BODY_READ_S)
        except BodyTooLarge:
            return await respond(send, 413, f"the body is over {self.max_body_bytes} bytes")
        except TimeoutError:
            return await respond(send, 408, f"the body did not arrive within {BODY_READ_S:.0f}s")
        except ClientGone:
            return None
        await self.app(scope, replay(body, receive), send)


async def read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then waits as the original does."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed


async def respond(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    pairs += [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": body})


def error(status: int, detail: str, retry_after: int | None = None, **extra) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail[:DETAIL_CHARS], **extra}, status_code=status, headers=headers)


async def invalid(request: Request, problem: RequestValidationError) -> JSONResponse:
    """422 in one line: where and what, never the input echoed back (it may be 256 KiB)."""
    return error(422, "; ".join(map(described, problem.errors())))


def described(e: dict) -> str:
    if e["type"] == "json_invalid":
        return f"body: not JSON ({e.get('ctx', {}).get('error', 'cannot be parsed')})"
    return f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"


def create_app(pool: GraderPool, settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    app = FastAPI(title="kernelpilot grader", version=own_version(),
                  description=DESCRIPTION)
    app.add_middleware(Guard, token=settings.token, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, invalid)
    bearer = HTTPBearer(auto_error=False, description="KERNELPILOT_GRADER_TOKEN of the server")

    def require_token(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        if credentials is None or not authorized(f"Bearer {credentials.credentials}", settings.token):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    errors = {code: {"model": ErrorBody} for code in (400, 401, 408, 413, 422, 429, 503, 504)}

    @app.get("/v1/health", response_model=Health, responses={503: {"model": Health}})
    async def health():
        lanes = [LaneInfo(device=d.device, mode=d.mode, sandbox=d.sandbox, alive=alive) for d, alive in pool.devices()]
        alive = sum(lane.alive for lane in lanes)
        body = Health(status="ok" if alive == len(lanes) else "degraded", lanes=lanes, version=app.version)
        return body if alive else JSONResponse(body.model_dump(), status_code=503)

    @app.get("/v1/queue", response_model=QueueState, dependencies=[Security(require_token)])
    async def queue() -> QueueState:
        return pool.state()

    @app.get("/v1/problems", response_model=list[KnownProblem], dependencies=[Security(require_token)])
    async def problems() -> list[KnownProblem]:
        return [KnownProblem(id=k.id, hash=k.hash, level=k.level) for k in (catalog.known if catalog else [])]

    @app.post("/v1/grade", response_model=GradeResponse, responses=errors, dependencies=[Security(require_token)])
    async def grade(request: GradeRequest):
        deadline_s = min(request.deadline_s or settings.deadline_s, settings.deadline_s)
        try:
            problem = request.problem if request.problem is not None else named(catalog, request.problem_id)
        except ProblemError as unknown:
            return error(422, str(unknown))
        try:
            future = pool.submit(Job(problem, request.candidate, request.tokens, request.model), deadline_s)
        except QueueFull as full:
            return error(429, str(full), full.retry_after_s)
        except PoolClosed as closed:
            return error(503, str(closed), pool.retry_after())
        wrapped = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait({wrapped}, timeout=deadline_s)
        except asyncio.CancelledError:      # the client went away: what has not started leaves the queue
            pool.withdraw(future)
            raise
        if not done:
            return expired(pool, future, wrapped, deadline_s)
        return answer(pool, wrapped)

    return app


def named(catalog: Catalog | None, problem_id: str) -> str:
    if catalog is None:
        raise ProblemError("this grader was started without --problems, so it knows no problem_id: send the "
                           "problem's source as `problem`")
    return catalog.source(problem_id)


def expired(pool: GraderPool, future, wrapped, deadline_s: float) -> JSONResponse:
    if pool.withdraw(future):
        return error(504, f"not started within its deadline ({deadline_s:g}s): taken off the queue, never graded",
                     started=False)
    wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())     # its late failure is counted, not logged
    return error(504, f"not graded within its deadline ({deadline_s:g}s): the evaluation runs to its end and is "
                      "recorded in the history store, but this request gets no reward", started=True)


def answer(pool: GraderPool, wrapped: asyncio.Future):
    if wrapped.cancelled():
        return error(503, "the grader stopped before grading it", pool.retry_after())
    failure = wrapped.exception()
    if isinstance(failure, ProblemError):      # named by its file, not by where this server keeps it
        return error(422, f"bad problem: {str(failure).replace(f'{problem_folder()}/', '')}")
    if isinstance(failure, INFRA):
        return error(503, f"the grader failed (our side, not the candidate's): {type(failure).__name__}: {failure}",
                     pool.retry_after())
    if failure is not None:
        raise failure
    return response(wrapped.result())


def response(graded: Graded) -> GradeResponse:
    result, reward = graded.result, graded.reward
    return GradeResponse(status=result.status, flags=[flag.value for flag in result.flags], reward=reward.value,
                         kind=reward.kind, hack=reward.hack, reason=result.reason,
                         evaluation_id=graded.evaluation_id, queued_s=round(graded.queued_s, 3),
                         reward_detail=reward.as_dict(), result=result)
