"""What the sampling stages share (rft, grpo, best-of): their common config keys, the training
problems, the prompt (agent/prompts.py `build_messages`, the agent's own, with the contrastive
exemplars read from the store when asked), and seed completions.

A **seed completion** is one of the store's best correct, unflagged kernels for the problem
(with the analysis recorded with it), written as the model would answer: the analysis, then the
kernel in a ```python block. `seeds = N` mixes up to N of them into each problem's samples; they
are graded again like any sample and recorded as the stage's. That is how a stage starting from
a model that writes no correct kernel yet (a random tiny one, a weak SFT model) still has
positives to learn from: in rft they join the candidates (expert iteration with demonstrations),
in grpo they take places in the group (off-policy guidance). With `seeds = 0` (the default)
every candidate is the model's own.

    problems = training_problems(config, size="small")
    messages = prompt_for(problem, config.backend, device, store, config.exemplars)
    texts = seed_completions(store, problem, 2)
"""
from dataclasses import dataclass
from pathlib import Path

from agent.bench.runner import select_files
from agent.policy import Backend
from agent.prompts import build_messages, exemplars
from policy_training.config import PeftChoice
from policy_training.grading import GraderSettings
from policy_training.problems import Split, read_split
from policy_training.reward import RewardConfig, SpeedTerm
from policy_training.sft import NO_ADAPTER, Device
from policy_training.training import TrainingError
from tools.device import DeviceInfo
from tools.evaluator import Protocol
from tools.history import HistoryStore
from tools.problems import Problem, load_problem
from tools.sandbox.backends import SandboxKind
from tools.trust import Use, allowed


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    model: str                                  # the model directory to start from (an earlier stage's OUT/model)
    out: Path                                   # the stage's folder: model/, metrics.jsonl, summary.json
    problems: tuple[Path, ...] = ()             # problem files or folders (a KernelBench checkout too)
    problem_set: Path | None = None             # or a generated problem set's manifest.json: its train split
    only: tuple[str, ...] = ("*",)              # globs over problem names (file stems)
    backend: Backend = Backend.TRITON           # the kernels the prompt asks for
    exemplars: int = 0                          # earlier kernels per prompt from the store (fast, middling, slow)
    seeds: int = 0                              # the store's best correct kernels mixed into each problem's samples
    max_new_tokens: int = 512                   # tokens per sampled completion
    temperature: float = 1.0                    # sampling temperature
    static_cache: bool = False                  # a static KV cache; on a GPU transformers then compiles decoding (CUDA graphs)
    grader_url: str | None = None               # a grader service (token: KERNELPILOT_GRADER_TOKEN); none: in-process
    grading_lanes: int = 1                      # >1: graded on that many lane processes of the GPU, a generate call's together
    db: str | None = None                       # history store URL; none: KERNELPILOT_DB_URL or $KERNELPILOT_HOME/history.db
    cpu: bool = False                           # grade in the Triton interpreter even where a GPU is present
    sandbox: SandboxKind = SandboxKind.PROCESS  # where candidates run: process or docker
    timeout_s: float | None = None              # wall-clock limit per evaluation step
    protocol: Protocol = Protocol.REWARD        # the in-process evaluator's protocol: reward (RL throughput) or full
    speed_term: SpeedTerm = SpeedTerm.LOG       # the reward's speed term: log or capped speedup
    length_penalty: float = 0.0                 # reward subtracted per length_budget tokens beyond the budget
    length_budget: int = 4096                   # completion tokens before the length penalty starts
    peft: PeftChoice = PeftChoice.NONE          # none (full fine-tuning), lora, dora+rslora
    save_merged: bool = True                    # write OUT/model; false: only OUT/adapter (needs peft)
    lora_r: int = 16                            # adapter rank
    lora_alpha: int = 32                        # adapter scale numerator
    lora_dropout: float = 0.0                   # dropout on the adapters' input
    learning_rate: float = 1e-6                 # peak learning rate
    device: Device = Device.AUTO                # auto, cpu or cuda (the model's; grading has its own `cpu`)
    seed: int = 0                               # sampling and the trainer's seed

    def check(self) -> str | None:
        if not self.problems and self.problem_set is None:
            return "name problems (files or folders) or a problem_set manifest"
        if self.problems and self.problem_set is not None:
            return "problems and problem_set exclude each other"
        bad = [f"{key} must be positive" for key, value in (("max_new_tokens", self.max_new_tokens),
               ("learning_rate", self.learning_rate), ("lora_r", self.lora_r),
               ("length_budget", self.length_budget), ("grading_lanes", self.grading_lanes)) if value <= 0]
        bad += [f"{key} must not be negative" for key, value in (("exemplars", self.exemplars), ("seeds", self.seeds),
                ("temperature", self.temperature), ("length_penalty", self.length_penalty)) if value < 0]
        if not self.save_merged and self.peft is PeftChoice.NONE:
            bad.append(NO_ADAPTER)
        if self.grading_lanes > 1 and self.grader_url is not None:
            bad.append("grading_lanes above 1 needs the in-process grader (no grader_url)")
        return "; ".join(bad) or None

    def grading(self) -> GraderSettings:
        reward = RewardConfig(speed_term=self.speed_term, length_penalty=self.length_penalty,
                              length_budget=self.length_budget)
        return GraderSettings(url=self.grader_url, db=self.db, cpu=self.cpu, sandbox=self.sandbox,
                              timeout_s=self.timeout_s, protocol=self.protocol, reward=reward, lanes=self.grading_lanes)


def training_problems(config: RolloutConfig, size: str, split: Split = Split.TRAIN) -> list[Problem]:
    """The config's problems (a problem set: its `split`; the evaluation stage reads held_out),
    loaded at `size` (the grader's: full on a GPU, small in the interpreter). `config`: any with
    problems, problem_set and only."""
    sources = tuple(read_split(config.problem_set, split)) if config.problem_set else config.problems
    files = select_files(sources, frozenset(), config.only)
    if not files:
        raise TrainingError("no problem matches the selection (check problems, problem_set and only)")
    return [load_problem(f.path, size=size, suite=f.suite, level=f.level) for f in files]


def prompt_for(problem: Problem, backend: Backend, device: DeviceInfo, store: HistoryStore, k: int) -> list[dict]:
    """The agent's prompt for the problem, with up to `k` earlier kernels from the store (read now:
    a kernel recorded a moment ago is already there)."""
    return build_messages(problem, backend, device, exemplars(store, problem, k) if k else [])


def seed_completions(store: HistoryStore, problem: Problem, n: int) -> list[str]:
    """Up to `n` distinct correct, unflagged kernels of the problem from the store, fastest (then
    newest) first, each as a completion: its analysis, then the kernel."""
    if n <= 0:
        return []
    found, seen = [], set()
    for entry in sorted(store.entries(problem.hash), key=seed_rank):
        if entry.candidate_hash in seen or not allowed(entry, Use.BEST):
            continue
        source = store.source(entry.candidate_hash)
        if source:
            seen.add(entry.candidate_hash)
            found.append(as_completion(entry.analysis, source))
        if len(found) == n:
            break
    return found


def seed_rank(entry) -> tuple:
    return (-(entry.speedup_vs_eager or 0.0), -entry.id)


def as_completion(analysis: str | None, kernel: str) -> str:
    """An answer in the agent's single-turn form (what SFT trains and the local policy reads)."""
    head = (analysis or "").strip() or "## Performance analysis\n(none recorded)"
    return f"{head}\n\n```python\n{kernel.strip()}\n```"
