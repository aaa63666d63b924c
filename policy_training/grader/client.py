"""A client of the grader service (httpx), sync and async, retrying what is worth retrying.

    with GraderClient("http://grader:8765") as client:        # token: KERNELPILOT_GRADER_TOKEN
        grade = client.grade(problem_source, candidate_source)  # a GradeResponse
        grade = client.grade(None, candidate_source, problem_id="L2/1_Conv2D_ReLU_BiasAdd")   # one it knows
        grade.status, grade.flags, grade.reward
    async with AsyncGraderClient("http://grader:8765", token) as client:
        grade = await client.grade(problem_source, candidate_source, deadline_s=120)

429 (the queue is full) and 503 (the grader's infrastructure failed, or it is stopping) are
tried again after their Retry-After (capped at `max_wait_s`), and so is a connection that
cannot be made (a service restarting), up to `attempts` tries in all; then `GraderError`
says what the last try met, "no grader at URL" when nothing listens. Every other error
raises at once: 401/413/422 mean the request itself is wrong, and a 504 or a connection lost
while waiting is not retried, because the candidate may have been graded already.
"""
import os

import httpx
import tenacity

from policy_training.grader.protocol import GradeResponse, Health, QueueState

TOKEN_ENV = "KERNELPILOT_GRADER_TOKEN"
RETRIED = frozenset({429, 503})
MARGIN_S = 30.0             # the HTTP read timeout beyond the request's deadline
UNDATED_READ_S = 3600.0     # the read timeout of a request that names no deadline (the server's bounds it)


class GraderError(RuntimeError):
    """The grader gave no verdict: its status (None: no answer at all) and why, in one line."""

    def __init__(self, status: int | None, detail: str, retry_after: float | None = None, retryable: bool = False):
        super().__init__(f"grader: {status or 'no answer'}: {detail}")
        self.status, self.detail, self.retry_after = status, detail, retry_after
        self.retryable = retryable or status in RETRIED

    @staticmethod
    def of(response: httpx.Response) -> "GraderError":
        try:
            data = response.json()
        except ValueError:
            data = None
        detail = str(data.get("detail", response.text)) if isinstance(data, dict) else response.text[:300]
        retry_after = response.headers.get("retry-after", "")
        return GraderError(response.status_code, detail, float(retry_after) if retry_after.isdigit() else None)


class _Base:
    def __init__(self, url: str, token: str | None = None, attempts: int = 5, max_wait_s: float = 30.0,
                 deadline_s: float | None = None):
        self.url, self.attempts, self.max_wait_s, self.deadline_s = url.rstrip("/"), attempts, max_wait_s, deadline_s
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _body(self, problem: str | None, candidate: str, deadline_s: float | None, tokens: int | None,
              model: str | None, problem_id: str | None) -> dict:
        body = {"problem": problem, "problem_id": problem_id, "candidate": candidate,
                "deadline_s": deadline_s or self.deadline_s, "tokens": tokens, "model": model}
        return {key: value for key, value in body.items() if value is not None}

    def _timeout(self, body: dict) -> httpx.Timeout:
        return httpx.Timeout(10.0, read=body.get("deadline_s", UNDATED_READ_S) + MARGIN_S)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception()
        backoff = 0.5 * 2 ** (state.attempt_number - 1)
        return min(self.max_wait_s, error.retry_after or backoff)

    def _retry_options(self) -> dict:
        return {"stop": tenacity.stop_after_attempt(self.attempts), "wait": self._wait, "reraise": True,
                "retry": tenacity.retry_if_exception(lambda e: isinstance(e, GraderError) and e.retryable)}

    def _unreachable(self, error: httpx.TransportError) -> GraderError:
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            return GraderError(None, f"no grader at {self.url}: {error} (is `kernelpilot grader serve` running?)",
                               retryable=True)
        return GraderError(None, f"{self.url}: {type(error).__name__}: {error} (not retried: it may have been graded)")


def _checked(response: httpx.Response) -> dict:
    if response.status_code != 200:
        raise GraderError.of(response)
    return response.json()


class GraderClient(_Base):
    """Blocking; safe to share between threads (httpx.Client is)."""

    def __init__(self, url: str, token: str | None = None, **options):
        super().__init__(url, token, **options)
        self.http = httpx.Client(headers=self.headers)

    def grade(self, problem: str | None, candidate: str, deadline_s: float | None = None, tokens: int | None = None,
              model: str | None = None, problem_id: str | None = None) -> GradeResponse:
        body = self._body(problem, candidate, deadline_s, tokens, model, problem_id)
        for attempt in tenacity.Retrying(**self._retry_options()):
            with attempt:
                data = self._call("POST", "/v1/grade", json=body, timeout=self._timeout(body))
        return GradeResponse.model_validate(data)

    def health(self) -> Health:
        return Health.model_validate(self._call("GET", "/v1/health"))

    def queue(self) -> QueueState:
        return QueueState.model_validate(self._call("GET", "/v1/queue"))

    def _call(self, method: str, path: str, **options) -> dict:
        try:
            return _checked(self.http.request(method, self.url + path, **options))
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "GraderClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncGraderClient(_Base):
    """For asyncio: many grades in flight on one event loop (the TRL reward function's way)."""

    def __init__(self, url: str, token: str | None = None, **options):
        super().__init__(url, token, **options)
        self.http = httpx.AsyncClient(headers=self.headers)

    async def grade(self, problem: str | None, candidate: str, deadline_s: float | None = None, tokens: int | None = None,
                    model: str | None = None, problem_id: str | None = None) -> GradeResponse:
        body = self._body(problem, candidate, deadline_s, tokens, model, problem_id)
        async for attempt in tenacity.AsyncRetrying(**self._retry_options()):
            with attempt:
                data = await self._call("POST", "/v1/grade", json=body, timeout=self._timeout(body))
        return GradeResponse.model_validate(data)

    async def health(self) -> Health:
        return Health.model_validate(await self._call("GET", "/v1/health"))

    async def queue(self) -> QueueState:
        return QueueState.model_validate(await self._call("GET", "/v1/queue"))

    async def _call(self, method: str, path: str, **options) -> dict:
        try:
            return _checked(await self.http.request(method, self.url + path, **options))
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncGraderClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
