"""A TRL reward function that grades each completion through the grader service.

    from policy_training.grader.trl_reward import grader_reward
    reward = grader_reward("http://grader:8765", token=token)        # async; its __name__: "kernelpilot_grader"
    GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=dataset)    # columns "prompt" and "problem"

The signature is TRL's custom reward function (GRPOTrainer, RLOOTrainer): `reward(prompts,
completions, **kwargs) -> list[float | None]`, one entry per completion; the dataset's other
columns come as keyword lists (here `problem`: each row's problem source; or, with
`column="problem_id"`, each row's problem id among those the grader was started with), with
`completion_ids` (whose lengths feed the reward's length penalty) and `trainer_state`. A
completion is a string (standard format) or a list of messages ending with the assistant's
(conversational format). TRL runs an `async def` reward function on its own event loop, so a
batch is graded concurrently and the grader's queue fills its runtimes; `grader_reward_sync`
is the blocking twin (threads) for trainers that call plain functions.

The candidate is the last fenced ```python block of the completion (any fenced block if none is
tagged python), else the whole completion: prose then earns the grader's compile_error penalty,
never a guess of ours. A sample the grader could not grade for our side's reasons (503 after
retries, a 504, no service) gets None: TRL leaves it out of this reward, never a misleading 0.
A wrong token, a bad problem or an oversized body raises: every later sample would fail alike.
"""
import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from agent.policy import FENCE, python_blocks
from policy_training.grader.client import AsyncGraderClient, GraderClient, GraderError

PROBLEM_COLUMN = "problem"
ID_COLUMN = "problem_id"        # a column of this name holds ids the grader knows (`serve --problems`), not sources
NO_VERDICT = frozenset({None, 429, 503, 504})      # our side's: leave the sample out


def completion_text(completion) -> str:
    """A standard completion's text, or the content of a conversational one's last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    raise TypeError(f"a completion is a string or a list of messages, not {type(completion).__name__}")


def extract_code(completion) -> str:
    text = completion_text(completion)
    chosen = python_blocks(text) or [code for _, code in FENCE.findall(text)]
    return chosen[-1] if chosen else text


def _rows(completions: list, kwargs: dict, column: str) -> list[tuple[str, str, int | None]]:
    """(problem, candidate, tokens) of each completion."""
    problems = kwargs.get(column)
    if problems is None or len(problems) != len(completions):
        raise ValueError(f"the grader's reward needs the dataset column '{column}' (each row's problem), "
                         f"one per completion; got {'none' if problems is None else len(problems)}")
    lengths = kwargs.get("completion_ids") or [None] * len(completions)
    return [(problem, extract_code(completion), None if ids is None else len(ids))
            for problem, completion, ids in zip(problems, completions, lengths)]


def _problem(column: str, problem: str) -> dict:
    """The grade call's problem arguments: a source, or an id when the column holds ids."""
    return {"problem": None, "problem_id": problem} if column == ID_COLUMN else {"problem": problem}


def _left_out(error: GraderError) -> None:
    """None for a sample the grader could not grade for our side's reasons; anything else raises."""
    if error.status not in NO_VERDICT:
        raise error
    return None


def grader_reward(url: str, token: str | None = None, column: str = PROBLEM_COLUMN, model: str | None = None,
                  deadline_s: float | None = None, **client_options) -> Callable:
    """An async TRL reward function grading through the service at `url`."""

    async def kernelpilot_grader(prompts: list, completions: list, **kwargs) -> list[float | None]:
        rows = _rows(completions, kwargs, column)
        async with AsyncGraderClient(url, token, deadline_s=deadline_s, **client_options) as client:
            async def one(problem: str, candidate: str, tokens: int | None) -> float | None:
                try:
                    return (await client.grade(candidate=candidate, tokens=tokens, model=model,
                                               **_problem(column, problem))).reward
                except GraderError as error:
                    return _left_out(error)
            return list(await asyncio.gather(*(one(*row) for row in rows)))

    return kernelpilot_grader


def grader_reward_sync(url: str, token: str | None = None, column: str = PROBLEM_COLUMN, model: str | None = None,
                       deadline_s: float | None = None, threads: int = 16, **client_options) -> Callable:
    """The blocking twin of `grader_reward`: the batch graded on `threads` threads."""

    def kernelpilot_grader(prompts: list, completions: list, **kwargs) -> list[float | None]:
        rows = _rows(completions, kwargs, column)
        with GraderClient(url, token, deadline_s=deadline_s, **client_options) as client:
            def one(row: tuple[str, str, int | None]) -> float | None:
                try:
                    return client.grade(candidate=row[1], tokens=row[2], model=model, **_problem(column, row[0])).reward
                except GraderError as error:
                    return _left_out(error)
            with ThreadPoolExecutor(max_workers=max(1, min(threads, len(rows)))) as pool:
                return list(pool.map(one, rows))

    return kernelpilot_grader
