"""`kernelpilot train evaluate`: a model measured on held-out problems, the same way after every
stage (issue 22), so the stages can be compared.

For each problem (files, folders, a KernelBench checkout, or a generated problem set's
manifest.json: its `split`, held_out by default) the agent's own prompt is rendered
(rollouts.py `prompt_for` = agent/prompts.py `build_messages`, as at inference and in rft), `k`
completions are sampled (greedy by default), `batch_size` prompts to one `generate` call
(sampling.py `sample_batch`, left-padded), and each is graded by the real evaluator (in-process,
or the grader service at `grader_url`, as in rft; the `full` protocol by default) and written to
the history store (origin policy `evaluate`, the model directory as its model; `record = false`
writes nothing: in-process only, a service records every verdict).

OUT/rows.jsonl gets one `EvalRow` per graded sample, appended and flushed as it is graded, so a
killed run resumes: run the same command again and only the missing (problem, sample) pairs are
sampled and graded (a problem with some samples graded is sampled again; only its missing
indices are graded). OUT/run.json holds what the rows depend on (the model's path and a spot
digest of its weights, the config less where it runs): other values refuse to resume, in one
line, as does a grader of the other kind (GPU or interpreter) than the one that graded the
rows. A sample the grader service gave no verdict (429/503/504 after its retries) gets no row:
the summary counts it `missing` and the next run grades it. With sampling (temperature > 0) a
resumed run draws other samples than an uninterrupted one would.

OUT/summary.json (`evaluation_metrics`, over the graded samples; shares are fractions):
- compiles: a kernel was extracted (the completion's last ```python block defines `ModelNew`,
  what `--policy local:DIR` submits) and the evaluation got past loading: status is not
  compile_error (Triton's JIT errors at the first call count) and it did not fail or get
  rejected in the start or load phase (import, the static check, building ModelNew);
- correct: correct and counted by the trust rules (tools/trust.py `Use.METRICS`);
- fast_1 vs eager / vs torch.compile: KernelBench's fast_p at p = 1 over all samples (correct,
  counted and a trusted speedup above 1); geomean_eager / geomean_compile over the counted,
  timed samples (`geomean_rows` says how many): agent/bench/metrics.py's functions, on the rows
  as bench rows;
- mean completion tokens, the share that stopped with EOS and that had a kernel extracted;
- whether every prompt was the agent's own: each row keeps its prompt's hash; with exemplars = 0
  they are checked against `build_messages` rebuilt now (with exemplars from the store: null).
Graded in the Triton interpreter nothing is timed: the speed metrics are null and `speed` says
"not measured" (never a number).

    kernelpilot train evaluate --set model=runs/rft/model --set problem_set=train_problems/manifest.json \\
        --set max_new_tokens=1024 --out runs/eval-rft
    python -m policy_training evaluate --set model=runs/tiny --set problems=benchmarks/problems --set cpu=true \\
        --set max_new_tokens=16 --out runs/eval-tiny
"""
import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agent.bench.metrics import metrics, run_timed, times
from agent.bench.rows import BenchRow
from agent.local_policy import last_python_block
from agent.policy import Backend
from agent.prompts import build_messages
from policy_training.config import as_dict
from policy_training.grading import Graded, GraderSettings, grade_each, open_grader
from policy_training.problems import Split, manifest_digest
from policy_training.rollouts import prompt_for, training_problems
from policy_training.sampling import Sample, sample_batch
from policy_training.sft import Device, use_cpu
from policy_training.training import MissingStack, TrainingError, load_pretrained, write_summary
from tools.evaluator import Protocol
from tools.problems import Problem
from tools.records import EvalStatus, Mode, Phase
from tools.sandbox.backends import SandboxKind
from tools.trust import Use, Versus, allowed, trusted_speedup

STAGE, ROWS, RUN = "evaluate", "rows.jsonl", "run.json"
NOT_MEASURED = "not measured: no sample was graded on a GPU (the Triton interpreter times nothing)"
# Keys that say where and how fast the run goes, not what it measures: they may change on resume.
NOT_IDENTITY = ("out", "grader_url", "db", "sandbox", "timeout_s", "record", "batch_size", "device", "grading_lanes")
SLICES, SLICE_BYTES = 64, 64 * 1024


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    model: str                                  # the model directory to measure (a stage's OUT/model)
    out: Path                                   # OUT/rows.jsonl, OUT/run.json, OUT/summary.json
    problems: tuple[Path, ...] = ()             # problem files or folders (a KernelBench checkout too)
    problem_set: Path | None = None             # or a generated problem set's manifest.json: its `split`
    split: Split = Split.HELD_OUT               # which split of problem_set: held_out (default) or train
    only: tuple[str, ...] = ("*",)              # globs over problem names (file stems)
    backend: Backend = Backend.TRITON           # the kernels the prompt asks for
    exemplars: int = 0                          # earlier kernels per prompt from the store (0: the prompt is fixed)
    k: int = 1                                  # samples per problem
    temperature: float = 0.0                    # 0: greedy; above 0: sampled (then k may be above 1)
    top_p: float = 1.0                          # nucleus sampling's mass (with temperature > 0)
    max_new_tokens: int = 2048                  # tokens per answer
    batch_size: int = 8                         # prompts per generate call (each sampled k times)
    static_cache: bool = False                  # a static KV cache; on a GPU transformers then compiles decoding (CUDA graphs)
    record: bool = True                         # write every graded sample to the history store (origin: evaluate)
    grading_lanes: int = 1                      # >1: graded on that many lane processes of the GPU, a generate call's together
    grader_url: str | None = None               # a grader service (token: KERNELPILOT_GRADER_TOKEN); none: in-process
    db: str | None = None                       # history store URL; none: KERNELPILOT_DB_URL or the home's history.db
    cpu: bool = False                           # grade in the Triton interpreter even where a GPU is present
    sandbox: SandboxKind = SandboxKind.PROCESS  # where candidates run: process or docker
    timeout_s: float | None = None              # wall-clock limit per evaluation step
    protocol: Protocol = Protocol.FULL          # the in-process evaluator's protocol: full (for reporting) or reward
    device: Device = Device.AUTO                # where the model generates: auto, cpu or cuda
    bf16: bool = False                          # generate in bfloat16 (GPU only; float32 otherwise)
    seed: int = 0                               # the sampling seed

    def check(self) -> str | None:
        if not self.problems and self.problem_set is None:
            return "name problems (files or folders) or a problem_set manifest"
        if self.problems and self.problem_set is not None:
            return "problems and problem_set exclude each other"
        if min(self.k, self.max_new_tokens, self.batch_size) < 1 or self.exemplars < 0 or not 0 < self.top_p <= 1:
            return "k, max_new_tokens and batch_size must be positive, exemplars not negative, top_p in (0, 1]"
        if self.temperature < 0 or (self.temperature == 0 and self.k > 1):
            return "temperature must not be negative; k > 1 needs temperature > 0 (greedy answers are all alike)"
        if self.bf16 and self.device is Device.CPU:
            return "bf16 needs a GPU (device = cuda or auto)"
        if self.grader_url is not None and not self.record:
            return "record=false needs the in-process grader (a grader service records every verdict)"
        if self.grading_lanes < 1 or (self.grading_lanes > 1 and (self.grader_url is not None or not self.record)):
            return "grading_lanes must be 1 or more, and above 1 needs the in-process grader with record=true"
        return None

    def grading(self) -> GraderSettings:
        return GraderSettings(url=self.grader_url, db=self.db, cpu=self.cpu, sandbox=self.sandbox,
                              timeout_s=self.timeout_s, protocol=self.protocol, record=self.record,
                              lanes=self.grading_lanes)


@dataclass(frozen=True)
class EvalRow:
    """One graded sample: what the evaluator said and what the trust rules let it claim."""

    problem: str                                # the problem's name (file stem)
    problem_hash: str
    sample: int                                 # 0 .. k-1
    status: EvalStatus
    phase: str | None                           # where it failed (start, load, run, time); None when correct
    flags: tuple[str, ...]
    extracted: bool                             # its last ```python block defines ModelNew
    speedup_vs_eager: float | None              # trusted and counted in metrics (tools/trust.py); None otherwise
    speedup_vs_compile: float | None
    timed: bool                                 # graded on a GPU (timed); False in the interpreter
    tokens: int                                 # completion tokens (EOS included when it stopped)
    stopped: bool                               # it ended with EOS within max_new_tokens
    prompt_hash: str                            # sha256 of the prompt's messages (the agent's own)
    evaluation_id: int | None                   # its row in the history store; None when not recorded
    seconds: float                              # grading time
    completion: str

    def __post_init__(self):
        object.__setattr__(self, "status", EvalStatus(self.status))
        object.__setattr__(self, "flags", tuple(self.flags))

    @property
    def compiles(self) -> bool:
        """A kernel was extracted, and it imported and built (see the module docstring)."""
        return (self.extracted and self.status is not EvalStatus.COMPILE_ERROR
                and self.phase not in (Phase.START.value, Phase.LOAD.value))

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "status": self.status.value, "flags": list(self.flags)})


def as_row(problem: Problem, index: int, drawn: Sample, graded: Graded, prompt: str) -> EvalRow:
    counted = allowed(graded, Use.METRICS)
    return EvalRow(problem.name, problem.hash, index, graded.status, graded.phase and graded.phase.value, graded.flags,
                   extracted=has_kernel(drawn.text),
                   speedup_vs_eager=trusted_speedup(graded, Versus.EAGER) if counted else None,
                   speedup_vs_compile=trusted_speedup(graded, Versus.COMPILE) if counted else None,
                   timed=graded.mode is Mode.GPU, tokens=len(drawn.ids), stopped=drawn.stopped, prompt_hash=prompt,
                   evaluation_id=graded.evaluation_id, seconds=round(graded.seconds, 3), completion=drawn.text)


def has_kernel(text: str) -> bool:
    block = last_python_block(text)
    return block is not None and "class ModelNew" in block


def prompt_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------ the rows file and resuming

def read_rows(out: Path) -> list[EvalRow]:
    """OUT/rows.jsonl's complete rows; a torn last line (a kill mid-write) is cut off the file."""
    path = out / ROWS
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
    return [EvalRow(**json.loads(line)) for line in text.splitlines() if line.strip()]


def append_row(out: Path, row: EvalRow) -> None:
    with open(out / ROWS, "a") as handle:
        handle.write(row.to_json() + "\n")
        handle.flush()


def weights_digest(folder: Path) -> str:
    """sha256 of config.json and of each weight file's size and 64 evenly spaced 64 KiB slices: a
    model retrained into the same folder reads as another, without reading gigabytes."""
    if not (folder / "config.json").is_file():
        raise TrainingError(f"{folder}: not a Hugging Face model directory (no config.json)")
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as handle:
            for i in range(SLICES):
                handle.seek(size * i // SLICES)
                digest.update(handle.read(SLICE_BYTES))
    return digest.hexdigest()


def identity(config: EvaluateConfig) -> dict:
    """What the rows depend on: the model (its path and weights) and every config key but where the run goes."""
    keys = {key: value for key, value in as_dict(config).items() if key not in (*NOT_IDENTITY, "model")}
    return {"model": str(Path(config.model).resolve()), "weights": weights_digest(Path(config.model)), "config": keys}


def open_run(out: Path, wanted: dict) -> list[EvalRow]:
    """The rows already graded for this model and config (none in a new OUT); another's refuse."""
    out.mkdir(parents=True, exist_ok=True)
    saved = json.loads((out / RUN).read_text()) if (out / RUN).exists() else None
    rows = read_rows(out)
    if saved is None and rows:
        raise TrainingError(f"{out} holds {ROWS} but no {RUN}: not an evaluation folder; use another out")
    if saved is not None and saved != wanted:
        differ = [key for key in ("model", "weights") if saved.get(key) != wanted[key]] + sorted(
            key for key in wanted["config"] if saved.get("config", {}).get(key) != wanted["config"][key])
        raise TrainingError(f"{out} holds rows of another model or config ({', '.join(differ) or 'run.json'} not "
                            "the same): use another out, or the same model and config to resume")
    (out / RUN).write_text(json.dumps(wanted, indent=1) + "\n")
    return rows


# ------------------------------------------------------------------ the run

def run_evaluate(config: EvaluateConfig, log=print, grader=None) -> dict:
    """Sample, grade, record, and summarise; the summary. `grader`: an open one to reuse (tests),
    else one is opened from the config (after OUT's rows are found to be this run's)."""
    started = time.monotonic()
    if importlib.util.find_spec("transformers") is None:       # generation only: trl, peft and datasets not needed
        raise MissingStack("evaluate needs transformers (the train extra): pip install 'kernelpilot[train]'")
    rows = open_run(config.out, identity(config))
    if grader is None:
        with open_grader(config.grading(), STAGE, config.model) as opened:
            return evaluate_with(config, opened, rows, started, log)
    return evaluate_with(config, grader, rows, started, log)


def evaluate_with(config: EvaluateConfig, grader, rows: list[EvalRow], started: float, log) -> dict:
    timed = grader.device.mode is Mode.GPU
    if any(row.timed != timed for row in rows):
        raise TrainingError(f"{config.out} holds rows graded {'in the interpreter' if timed else 'on a GPU'}, and this "
                            f"grader {'times on a GPU' if timed else 'runs the interpreter'}: use another out")
    problems = list({p.hash: p for p in training_problems(config, grader.size, config.split)}.values())
    done = {(row.problem_hash, row.sample) for row in rows}
    pending = [(p, [i for i in range(config.k) if (p.hash, i) not in done]) for p in problems]
    pending = [(problem, missing) for problem, missing in pending if missing]
    log(f"evaluate: {len(problems)} problem(s) x {config.k}: {len(done)} sample(s) already graded, "
        f"{sum(len(m) for _, m in pending)} to go")
    if pending:
        grade_pending(config, grader, pending, log)
    wanted = {(p.hash, i) for p in problems for i in range(config.k)}
    rows = [row for row in read_rows(config.out) if (row.problem_hash, row.sample) in wanted]
    record = {"model": config.model, **evaluation_metrics(rows, len(problems)), "expected": len(wanted),
              "missing": len(wanted) - len(rows), "prompts": prompt_check(rows, problems, config, grader.device),
              "split": config.split.value if config.problem_set else None,
              "manifest_digest": manifest_digest(config.problem_set) if config.problem_set else None,
              "grader": config.grader_url or "in-process", "store": grader.store.where if config.record else None,
              "session": grader.session, "written_back": grader.written, "config": as_dict(config)}
    return write_summary(config.out, STAGE, started, record)


def grade_pending(config: EvaluateConfig, grader, pending: list[tuple[Problem, list[int]]], log) -> None:
    """Generate `batch_size` problems at a time, grade each missing sample, append its row."""
    import torch

    model, tokenizer = load_pretrained(config.model)
    cpu = use_cpu(config.device)
    if config.bf16 and cpu:
        raise TrainingError("bf16 needs a GPU, and torch sees none")
    model.to("cpu" if cpu else "cuda", dtype=torch.bfloat16 if config.bf16 else torch.float32).eval()
    torch.manual_seed(config.seed)
    with Progress(TextColumn("[bold]evaluate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as progress:
        task = progress.add_task("samples", total=sum(len(missing) for _, missing in pending))
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start:start + config.batch_size]
            for row in grade_batch(config, model, tokenizer, grader, batch, log):
                append_row(config.out, row)
                progress.advance(task)


def grade_batch(config: EvaluateConfig, model, tokenizer, grader, batch, log):
    """The batch's rows, in order, each as soon as it is graded (with lanes, all of the batch's
    samples are graded together); a sample without a verdict: no row."""
    prompts = [prompt_for(problem, config.backend, grader.device, grader.store, config.exemplars)
               for problem, _ in batch]
    drawn = sample_batch(model, tokenizer, prompts, config.k, config.max_new_tokens, config.temperature, config.top_p,
                         config.static_cache)
    wanted = [(problem, messages, index, samples[index])
              for (problem, missing), messages, samples in zip(batch, prompts, drawn) for index in missing]
    verdicts = grade_each(grader, [(problem, sample.text, len(sample.ids)) for problem, _, _, sample in wanted])
    for (problem, messages, index, sample), graded in zip(wanted, verdicts):
        if graded.status is None:
            log(f"evaluate: {problem.name} #{index}: the grader gave no verdict; the next run grades it")
            continue
        yield as_row(problem, index, sample, graded, prompt_hash(messages))
    log(f"evaluate: {len(wanted)} sample(s) of {len(batch)} problem(s) graded")


# ------------------------------------------------------------------ the metrics

def as_bench_row(row: EvalRow) -> BenchRow:
    """The sample as a bench row, so bench's metric functions (KernelBench's definitions) apply."""
    return BenchRow(key=f"{row.problem}#{row.sample}", level=None, name=row.problem, status=row.status.value,
                    speedup_vs_eager=row.speedup_vs_eager, speedup_vs_compile=row.speedup_vs_compile,
                    flags=row.flags, tokens=row.tokens, timed=row.timed)


def counted_metrics(bench: list[BenchRow]) -> dict:
    """Correct share, fast_1 and geomean vs eager and torch.compile over `bench` (bench's metric
    functions, every row a sample); the speed figures None when nothing was timed."""
    m, timed, n = metrics(bench, total=len(bench)), run_timed(False, bench), len(bench)
    speed = {f"fast_1_{v.value}": m.fast_p[v.value][1.0] if timed and n else None for v in Versus}
    speed |= {f"geomean_{v.value}": m.geomean_counted[v.value] if timed else None for v in Versus}
    return {"correct": m.correct / n if n else None, **speed,
            "geomean_rows": m.timed[Versus.EAGER.value] if timed else 0, "timed": timed}


def evaluation_metrics(rows: Sequence[EvalRow], problems: int) -> dict:
    """The summary's metrics over graded samples (the module docstring defines each)."""
    bench = [as_bench_row(row) for row in rows]
    counted, n = counted_metrics(bench), len(rows)
    share: Callable[[int], float | None] = lambda count: count / n if n else None
    return {"problems": problems, "samples": n, "compiles": share(sum(row.compiles for row in rows)), **counted,
            "problems_correct": len({r.problem_hash for r, b in zip(rows, bench) if b.counted}),
            "mean_tokens": sum(row.tokens for row in rows) / n if n else None,
            "stopped": share(sum(row.stopped for row in rows)), "extracted": share(sum(row.extracted for row in rows)),
            "statuses": {s.value: c for s in EvalStatus if (c := sum(row.status is s for row in rows))},
            "speed": "measured" if counted["timed"] else NOT_MEASURED}


def prompt_check(rows: Sequence[EvalRow], problems: list[Problem], config: EvaluateConfig, device) -> dict:
    """Were the prompts the agent's own? With exemplars (read from the store as it was) no rebuild is possible."""
    own = {p.hash: prompt_hash(build_messages(p, config.backend, device, [])) for p in problems}
    agent = all(own.get(row.problem_hash) == row.prompt_hash for row in rows) if config.exemplars == 0 else None
    return {"builder": "agent/prompts.py build_messages", "exemplars": config.exemplars,
            "distinct": len({row.prompt_hash for row in rows}), "agent_prompt": agent}


def summary_line(summary: dict) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    speed = (f"fast_1 {pct(summary['fast_1_eager'])} vs eager, {pct(summary['fast_1_compile'])} vs torch.compile, "
             f"geomean {times(summary['geomean_eager'])} eager over {summary['geomean_rows']} timed"
             if summary["timed"] else "speed not measured (interpreter)")
    tokens = "-" if summary["mean_tokens"] is None else f"{summary['mean_tokens']:.0f}"
    missing = f", {summary['missing']} missing (run again)" if summary["missing"] else ""
    return (f"evaluate: {summary['samples']} sample(s) of {summary['problems']} problem(s){missing}: compiles "
            f"{pct(summary['compiles'])}, correct {pct(summary['correct'])}, {speed}; {tokens} tokens/answer; "
            f"{summary['seconds']} s; model: {summary['model']}")
