"""The grader's wire protocol: the request and response bodies, their limits, and the error body.

The server (app.py) validates with these models and documents them in its OpenAPI page
(`/docs`, `/openapi.json`); the client (client.py) parses its answers with them. Every
error answer is `{"detail": "<one line>"}` (ErrorBody), 504 adds `started`.
"""
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policy_training.reward import RewardKind
from tools.records import EvalResult, EvalStatus

MAX_SOURCE_CHARS = 256 * 1024           # each of `problem` and `candidate`
MAX_BODY_BYTES = 1024 * 1024            # the whole body, checked before it is parsed (JSON escapes inflate sources)
MAX_DEADLINE_S = 24 * 3600.0
MAX_TOKENS = 10_000_000
MAX_ID_CHARS = 300


class GradeRequest(BaseModel):
    """POST /v1/grade: one candidate for one problem."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    problem: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_CHARS,
                                description="the problem's source: a KernelBench-format module (Model, get_inputs, "
                                            "get_init_inputs); identified by its content hash. Give this or "
                                            "`problem_id`")
    problem_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS,
                                   description="a problem the grader was started with (`--problems`): its id "
                                               "from GET /v1/problems, its file stem, or 12+ hex digits of its hash")
    candidate: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS,
                           description="the candidate's source, defining class ModelNew")
    deadline_s: float | None = Field(None, gt=0, le=MAX_DEADLINE_S,
                                     description="seconds from arrival until the answer is due (504 after); "
                                                 "at most the server's --deadline, which is also the default")
    tokens: int | None = Field(None, ge=0, le=MAX_TOKENS,
                               description="the answer's length in tokens, for the reward's length penalty")
    model: str | None = Field(None, max_length=128, description="the model that wrote the candidate "
                                                                "(recorded with it in the history store)")

    @field_validator("problem", "candidate")
    @classmethod
    def plain_text(cls, source: str | None) -> str | None:
        if source is None:
            return None
        if "\x00" in source:
            raise ValueError("holds a NUL character (a source is Python text)")
        try:
            source.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("is not valid Unicode (a lone surrogate escape)") from None
        return source

    @model_validator(mode="after")
    def one_problem(self) -> "GradeRequest":
        if (self.problem is None) == (self.problem_id is None):
            raise ValueError("give exactly one of `problem` (a source) and `problem_id`")
        return self


class GradeResponse(BaseModel):
    """200: the verdict and its reward. `reward` is None when the sample must be left out
    (kind `excluded`: the sandbox lacked isolation, our side's fault, never the candidate's)."""

    status: EvalStatus
    flags: list[str]
    reward: float | None
    kind: RewardKind
    hack: bool = Field(description="a hack case: rejected, or flagged for the candidate's own doing")
    reason: str = Field(description="why it is not correct ('' when correct)")
    evaluation_id: int | None = Field(description="its row in the history store; None if recording failed")
    queued_s: float = Field(description="seconds it waited for a runtime")
    reward_detail: dict = Field(description="the reward's breakdown (policy_training/reward.py Reward.as_dict)")
    result: EvalResult = Field(description="everything the evaluator reported (timings, speedups, device, log)")


class LaneInfo(BaseModel):
    device: str
    mode: str
    sandbox: str
    alive: bool


class Health(BaseModel):
    """GET /v1/health (no token needed): `ok` while every runtime is alive, else `degraded`
    (503 when none is)."""

    status: str
    lanes: list[LaneInfo]
    version: str


class QueueState(BaseModel):
    """GET /v1/queue: the bounded queue and what went through it since the service started."""

    depth: int = Field(description="requests waiting for a runtime")
    capacity: int = Field(description="the most that may wait; more get 429")
    in_flight: int = Field(description="requests being graded now")
    lanes: int
    graded: int = Field(description="evaluations finished with a verdict (late ones included)")
    rejected: int = Field(description="429s: the queue was full")
    expired: int = Field(description="504s taken off the queue before they started (never graded)")
    late: int = Field(description="verdicts that came after their request's deadline (recorded, not returned)")
    refused: int = Field(description="422s after queueing: the request's problem could not be used")
    failed: int = Field(description="503s: the infrastructure failed (no verdict)")
    unrecorded: int = Field(description="verdicts the history store failed to record")
    retried: int = Field(0, description="jobs put back in the queue, once each, after their lane died under them")
    restarts: int = Field(0, description="lane processes started again after they died")


class KnownProblem(BaseModel):
    id: str = Field(description="what `problem_id` may name: L<level>/<file stem> for KernelBench, else the stem")
    hash: str = Field(description="the sha256 of its source (the history store's problem hash)")
    level: int | None


class ErrorBody(BaseModel):
    detail: str
    started: bool | None = Field(None, description="504 only: whether the evaluation had started")
