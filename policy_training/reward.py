"""The RL reward: a pure function of the evaluator's verdict, with its breakdown.

    stats = ProblemStats()                              # running speed statistics per problem
    reward = score(result, RewardConfig(), stats)       # result: tools.records.EvalResult
    reward.value        # float, or None: leave the sample out (our side's fault)

In order (the trust rules are tools/trust.py's, the same the agent and bench use):
1. **Our side's fault** (the sandbox lacked isolation; an infrastructure failure the caller
   caught, see `excluded`): no reward at all. A 0 would teach the policy something false.
2. **The gate.** Not `correct`: a small fixed value per failure class (`RewardConfig.failure`).
   Correct but disqualified for reward by a flag: 0. When the flag is the candidate's doing
   (`tools.trust.CANDIDATES_DOING`), or the status is `rejected`, the reward marks a hack
   case: the history store keeps it (`tools/hack_cases.py`, `kernelpilot history hacks`).
3. **The speed term**, for a correct, allowed and timed result: the trusted speedup
   (vs eager by default) as log(speedup) or min(speedup, cap) - 1. Then CUDA-L1's smoothing:
   standardised against the running mean and σ of the problem's earlier speed terms and
   clipped at ±`clip` (1.5σ). Until a problem has `warmup` earlier terms (or while their σ
   is 0), the raw term is clipped instead, and the breakdown says so.
4. Without a GPU nothing is timed: a correct result earns the gate alone, and the
   breakdown says the speed term is absent.
5. An optional length penalty on the answer's tokens above a budget.

The statistics are updated with each speed term after it is scored, so a result never
standardises against itself; they are thread-safe (the grader scores concurrently) and
round-trip through `to_dict`/`from_dict` for a training checkpoint.
"""
import math
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from tools.records import EvalResult, EvalStatus, Flag
from tools.trust import CANDIDATES_DOING, OUR_SIDE, Use, Versus, disqualifying, excluded_from_reward, trusted_speedup


class RewardKind(StrEnum):
    SPEED = "speed"                 # correct, allowed and timed: gate + speed term
    UNTIMED = "untimed"             # correct and allowed, nothing timed (no GPU): the gate alone
    FAILED = "failed"               # the candidate failed: its failure class's fixed value
    DISQUALIFIED = "disqualified"   # correct, but a flag rules the reward out: 0
    EXCLUDED = "excluded"           # our side's fault: no reward, leave the sample out


class SpeedTerm(StrEnum):
    LOG = "log"         # ln(speedup): 2x and 0.5x are symmetric around 0
    CAPPED = "capped"   # min(speedup, cap) - 1


def default_failures() -> dict[EvalStatus, float]:
    # A kernel that runs but is wrong is nearer the goal than one that does not build;
    # a rejected candidate (a forbidden construct, a caught cheat) is the worst.
    return {EvalStatus.INCORRECT: -0.2, EvalStatus.RUNTIME_ERROR: -0.4, EvalStatus.TIMEOUT: -0.4,
            EvalStatus.CRASHED: -0.4, EvalStatus.COMPILE_ERROR: -0.5, EvalStatus.REJECTED: -1.0}


@dataclass(frozen=True)
class RewardConfig:
    correct: float = 1.0                        # the gate's value for a correct, allowed kernel
    failure: dict[EvalStatus, float] = field(default_factory=default_failures)
    versus: Versus = Versus.EAGER
    speed_term: SpeedTerm = SpeedTerm.LOG
    cap: float = 10.0                           # SpeedTerm.CAPPED's ceiling on the speedup
    speed_weight: float = 1.0
    standardise: bool = True                    # CUDA-L1's per-problem smoothing
    clip: float = 1.5                           # in σ (or in raw units before `warmup` terms)
    warmup: int = 2                             # earlier terms a problem needs before it is standardised
    length_penalty: float = 0.0                 # per `length_budget` tokens beyond the budget
    length_budget: int = 4096

    def __post_init__(self):
        object.__setattr__(self, "versus", Versus(self.versus))     # names from a config file or flags
        object.__setattr__(self, "speed_term", SpeedTerm(self.speed_term))
        missing = set(EvalStatus) - {EvalStatus.CORRECT} - set(self.failure)
        if missing:
            raise ValueError(f"RewardConfig.failure gives no value for {sorted(missing)}")
        if self.clip <= 0 or self.cap <= 1 or self.warmup < 1 or self.length_budget < 1:
            raise ValueError("RewardConfig: clip > 0, cap > 1, warmup >= 1 and length_budget >= 1 are required")


@dataclass(frozen=True)
class Reward:
    value: float | None                 # None: excluded, leave the sample out
    kind: RewardKind
    gate: float = 0.0
    speedup: float | None = None        # the trusted speedup the speed term came from
    raw_term: float | None = None       # log or capped speedup, before smoothing
    speed: float = 0.0                  # the speed term as added (weighted, smoothed, clipped)
    length: float = 0.0                 # the length penalty as subtracted
    hack: bool = False                  # a hack case (tools/hack_cases.py)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"value": self.value, "kind": self.kind.value, "gate": self.gate, "speedup": self.speedup,
                "raw_term": self.raw_term, "speed": self.speed, "length": self.length, "hack": self.hack,
                "notes": list(self.notes)}


class ProblemStats:
    """Running mean and σ (Welford) of each problem's speed terms."""

    def __init__(self, saved: dict[str, list[float]] | None = None):
        self._moments = {key: tuple(value) for key, value in (saved or {}).items()}   # hash -> (n, mean, m2)
        self._lock = threading.Lock()

    def moments(self, problem_hash: str) -> tuple[int, float, float]:
        """(n, mean, σ) of the problem's terms so far."""
        with self._lock:
            n, mean, m2 = self._moments.get(problem_hash, (0, 0.0, 0.0))
        return int(n), mean, math.sqrt(m2 / n) if n else 0.0

    def observe(self, problem_hash: str, term: float) -> None:
        with self._lock:
            n, mean, m2 = self._moments.get(problem_hash, (0, 0.0, 0.0))
            n += 1
            delta = term - mean
            mean += delta / n
            self._moments[problem_hash] = (n, mean, m2 + delta * (term - mean))

    def to_dict(self) -> dict[str, list[float]]:
        with self._lock:
            return {key: list(value) for key, value in self._moments.items()}

    @staticmethod
    def from_dict(saved: dict[str, list[float]]) -> "ProblemStats":
        return ProblemStats(saved)


def excluded(why: str) -> Reward:
    """No reward: an infrastructure failure the caller caught (the evaluator raised)."""
    return Reward(None, RewardKind.EXCLUDED, notes=(why,))


def score(result: EvalResult, config: RewardConfig, stats: ProblemStats, tokens: int | None = None) -> Reward:
    """The reward of one verdict; `tokens`: the answer's length, for the length penalty."""
    if excluded_from_reward(result):
        return excluded("our side's fault: " + ", ".join(f.value for f in result.flags if Flag(f) in OUR_SIDE))
    length = length_penalty(tokens, config)
    if result.status is not EvalStatus.CORRECT:
        return Reward(config.failure[result.status] - length, RewardKind.FAILED, gate=config.failure[result.status],
                      length=length, hack=result.status is EvalStatus.REJECTED, notes=(result.reason[:200],))
    ruled_out = disqualifying(result, Use.REWARD)
    if ruled_out:
        return Reward(0.0, RewardKind.DISQUALIFIED, hack=bool(set(ruled_out) & CANDIDATES_DOING),
                      notes=("flagged: " + ", ".join(f.value for f in ruled_out),))
    speedup = trusted_speedup(result, config.versus)
    if speedup is None:
        why = ("no speed term: nothing is timed without a GPU" if result.runtime_ms is None
               else f"no speed term: no {config.versus.value} baseline was measured")
        return Reward(config.correct - length, RewardKind.UNTIMED, gate=config.correct, length=length, notes=(why,))
    raw = raw_term(speedup, config)
    speed, note = smoothed(raw, result.problem_hash, config, stats)
    stats.observe(result.problem_hash, raw)
    return Reward(config.correct + config.speed_weight * speed - length, RewardKind.SPEED, gate=config.correct,
                  speedup=speedup, raw_term=raw, speed=config.speed_weight * speed, length=length, notes=(note,))


def raw_term(speedup: float, config: RewardConfig) -> float:
    if config.speed_term is SpeedTerm.LOG:
        return math.log(speedup)
    return min(speedup, config.cap) - 1.0


def smoothed(raw: float, problem_hash: str, config: RewardConfig, stats: ProblemStats) -> tuple[float, str]:
    """The term standardised against the problem's history and clipped, with a note on how."""
    n, mean, sigma = stats.moments(problem_hash)
    if not config.standardise:
        return raw, "raw speed term (smoothing off)"
    if n < config.warmup or sigma == 0.0:
        return clip(raw, config.clip), f"raw speed term clipped at ±{config.clip} ({n} earlier term(s), σ {sigma:.3g})"
    return clip((raw - mean) / sigma, config.clip), f"standardised over {n} earlier term(s), clipped at ±{config.clip}σ"


def clip(value: float, bound: float) -> float:
    return max(-bound, min(bound, value))


def length_penalty(tokens: int | None, config: RewardConfig) -> float:
    if tokens is None or not config.length_penalty:
        return 0.0
    return config.length_penalty * max(0, tokens - config.length_budget) / config.length_budget
