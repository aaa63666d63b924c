"""The recipe on a real model (issue 22): a base model through SFT -> self-supervised rejection
sampling -> contrastive GRPO (and GRPO without exemplars, the ablation), each stage measured on a
held-out set fixed before any training, in resumable steps that fit a lent GPU's 30-minute lease.

One run lives in one STATE folder. `prepare` fixes the problems (no model, no GPU): the generated
set (seed `seed`, decontaminated against KernelBench levels 1 and 2, the levels whose op graphs
the generator's families could meet; its held-out split is never trained on) and
the stated KernelBench subset copied from the user's checkout, listed with their hashes in
STATE/heldout.json. `run` then does the next steps not yet done, in this order, until
`--deadline` seconds have passed (a step is never started after it):

    teacher          the built-in policy through the bench machinery over the train split (correctness
                     only: a trace needs no timing), then export
    eval-builtin     the built-in policy on the held-out set (the bar to compare with)
    eval-base        the base model on the held-out set (policy_training/evaluate.py)
    sft, eval-sft    LoRA SFT on the teacher's traces
    rft, eval-rft    rejection sampling from sft
    grpo, eval-grpo  contrastive GRPO from rft (exemplars from the store in every prompt)
    grpo-plain, eval-grpo-plain   the ablation: GRPO from rft with no exemplars

A step is done when STATE/steps/<step>.json exists (its seconds over every run that worked on it,
those runs' count, device, commit and summary: which run produced which row). The trained stages keep their LoRA adapter (STATE/<stage>/adapter, a few
MB); on a fresh machine a stage's model is rebuilt from the base and its chain of adapters
(policy_training/merge.py), so only STATE minus the models needs to travel between leases.
Held-out kernels live in a store of their own (STATE/eval/history.db), never in the training
store that exemplars and seeds come from. `report` (policy_training/recipe_report.py) writes the
table and the learning curves.

    python -m policy_training.recipe prepare --state runs/recipe --kernelbench ~/KernelBench
    python -m policy_training.recipe run --state runs/recipe --base /models/smollm2 --deadline 480
    python -m policy_training.recipe run --state runs/recipe --base /models/smollm2 --steps eval-base --set cpu=true
    python -m policy_training.recipe pack --state runs/recipe --out state.tgz      # between sessions
"""
import argparse
import json
import os
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from policy_training.config import ConfigError, PeftChoice, as_dict, load_config
from policy_training.decontaminate import evaluation_set
from policy_training.drafts import DType, Family
from policy_training.problems import Split, clean_problems, manifest, read_split, write_problems
from policy_training.smoke import home
from policy_training.training import MODEL, TrainingError
from tools.device import detect, versions
from tools.problems import source_hash
from tools.records import Mode
from tools.version import own_commit

STEPS = ("teacher", "eval-builtin", "eval-base", "sft", "eval-sft", "rft", "eval-rft", "grpo", "eval-grpo",
         "grpo-plain", "eval-grpo-plain")
CHAIN = {"base": (), "sft": ("sft",), "rft": ("sft", "rft"), "grpo": ("sft", "rft", "grpo"),
         "grpo-plain": ("sft", "rft", "grpo-plain")}
HELD_OUT = "heldout.json"


@dataclass(frozen=True)
class RecipeConfig:
    seed: int = 0                               # the generator's seed (policy_training/problems.py)
    count: int = 80                             # generated problems; about held_out_fraction of them held out
    held_out_fraction: float = 0.25             # by hash: never trained on, part of the held-out set
    level1: tuple[int, ...] = (19, 21, 23, 24, 26, 33, 36, 40, 47, 49)   # KernelBench level-1 problems held out
    level2: tuple[int, ...] = (12, 29, 33, 40, 45, 53, 56, 59, 63, 76)   # KernelBench level-2 problems held out
    teacher_turns: int = 1                      # the built-in policy's turns per training problem
    lanes: int = 4                              # bench lanes for the built-in policy's runs (0: in this process)
    peft: PeftChoice = PeftChoice.LORA          # every trained stage: only its adapter travels between leases
    lora_r: int = 8                             # adapter rank (about 10 MB a stage for SmolLM2-135M, float32)
    sft_epochs: float = 2.0                     # passes over the teacher's traces
    sft_learning_rate: float = 2e-4
    rft_k: int = 4                              # samples per training problem
    rft_learning_rate: float = 1e-4
    grpo_steps: int = 12                        # optimizer steps of each GRPO run
    num_generations: int = 8                    # the GRPO group
    grpo_prompts_per_step: int = 2              # problems per GRPO step (2 groups of num_generations)
    grpo_steps_per_generation: int = 3          # GRPO steps fed by one generate call (3 x 2 x 8 = 48 sequences)
    grpo_learning_rate: float = 2e-5
    exemplars: int = 3                          # earlier kernels per prompt in contrastive GRPO
    max_new_tokens: int = 3072                  # tokens per sampled completion (training and evaluation): the
                                                # teacher's answers run 1,070-3,089 SmolLM2 tokens (median 1,568)
    eval_k: int = 1                             # answers per held-out problem
    eval_temperature: float = 0.0               # 0: greedy
    eval_batch_size: int = 48                   # held-out prompts per generate call: generation of a 135 M model is
                                                # launch-bound, so a batch costs about what one prompt does (8 a call:
                                                # eval-base spent about 300 of its 458 s generating, on the H100)
    rft_generate_batch: int = 20                # training problems per generate call in rft (each sampled rft_k times)
    static_cache: bool = False                  # generate with a static KV cache (compiled decoding on a GPU): on
                                                # only once policy_training/generation_speed.py has measured it there
    grading_lanes: int = 1                      # the trained stages' samples graded on this many lane processes
                                                # (a generate call's together); 1: one at a time in this process
    cpu: bool = False                           # everything in the Triton interpreter and on the CPU (the test)
    max_length: int = 4608                      # SFT tokens per row (prompts 794-1,016 + the longest answer)

    def check(self) -> str | None:
        if min(self.count, self.eval_batch_size, self.rft_generate_batch, self.grading_lanes) < 1 or \
                not 0.0 < self.held_out_fraction < 1.0:
            return ("count, eval_batch_size, rft_generate_batch and grading_lanes must be positive and "
                    "held_out_fraction within (0, 1)")
        if self.peft is PeftChoice.NONE:
            return "peft none: a full model cannot travel between leases; use lora or dora+rslora"
        return None


@dataclass(frozen=True)
class Run:
    """One `run` invocation's facts: where, with what base, on what device."""
    state: Path
    base: str
    config: RecipeConfig

    @property
    def db(self) -> str:
        return f"sqlite:///{self.state / 'home' / 'history.db'}"

    @property
    def eval_db(self) -> str:
        return f"sqlite:///{self.state / 'eval' / 'history.db'}"


# ----------------------------------------------------------------------------- prepare

def prepare(state: Path, config: RecipeConfig, kernelbench: Path, log=print) -> dict:
    """The training problems and the held-out set, fixed once: STATE/problems, STATE/heldout,
    STATE/heldout.json. Refuses to run twice (the held-out set must never move)."""
    if (state / HELD_OUT).exists():
        raise TrainingError(f"{state / HELD_OUT} exists: the held-out set is fixed; use a new STATE to change it")
    found = evaluation_set(kernelbench, levels=(1, 2), log=log)     # level 3's networks: never a generated problem's graph
    families, dtypes = tuple(Family), (DType.FP32,)
    problems, result, drawn = clean_problems(config.seed, config.count, families, dtypes, found)
    record = manifest(problems, config.seed, config.count, drawn, families, dtypes, config.held_out_fraction, result)
    path = write_problems(state / "problems", problems, record)
    held = [state / "problems" / p.name for p in read_split(path, Split.HELD_OUT)]
    entries = [{"name": p.stem, "hash": source_hash(p.read_text()), "from": "generated"} for p in held]
    folder = state / "heldout"
    folder.mkdir(parents=True, exist_ok=True)
    for p in held:
        shutil.copyfile(p, folder / p.name)
    for level, target in copy_kernelbench(kernelbench, folder, config.level1, config.level2):
        entries.append({"name": target.stem, "hash": source_hash(target.read_text()), "from": f"KernelBench level {level}"})
    fixed = {"problems": entries, "train": len(read_split(path, Split.TRAIN)), "kernelbench": str(kernelbench),
             "config": as_dict(config), "versions": versions(), "fixed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (state / HELD_OUT).write_text(json.dumps(fixed, indent=1) + "\n")
    log(f"prepare: {fixed['train']} training problems, {len(entries)} held out ({len(held)} generated, "
        f"{len(entries) - len(held)} from KernelBench) in {state}")
    return fixed


def kernelbench_files(root: Path, level: int, ids: tuple[int, ...]) -> list[Path]:
    folder = root / f"level{level}"
    if not folder.is_dir():
        folder = root / "KernelBench" / f"level{level}"
    by_id = {int(p.name.split("_", 1)[0]): p for p in folder.glob("*.py") if p.name.split("_", 1)[0].isdigit()}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise TrainingError(f"{folder}: no problem numbered {', '.join(map(str, missing))} (is it a KernelBench checkout?)")
    return [by_id[i] for i in ids]


def copy_kernelbench(kernelbench: Path, folder: Path, level1, level2) -> list[tuple[int, Path]]:
    """The stated KernelBench problems copied from the user's checkout into `folder` as
    kb_l<level>_<file>; (level, copy) for each."""
    copies = []
    for level, ids in ((1, level1), (2, level2)):
        for source in kernelbench_files(kernelbench, level, tuple(ids)):
            target = folder / f"kb_l{level}_{source.name}"
            shutil.copyfile(source, target)
            copies.append((level, target))
    return copies


def attach_kernelbench(state: Path, kernelbench: Path) -> int:
    """The held-out set's KernelBench files copied from the user's checkout into an unpacked STATE
    (an archive never carries them); how many."""
    fixed = json.loads((state / HELD_OUT).read_text())
    (state / "heldout").mkdir(parents=True, exist_ok=True)
    return len(copy_kernelbench(kernelbench, state / "heldout", fixed["config"]["level1"], fixed["config"]["level2"]))


def check_held_out(state: Path) -> list[dict]:
    """The held-out set as fixed by `prepare`, every file unchanged since; one line if not."""
    path = state / HELD_OUT
    if not path.is_file():
        raise TrainingError(f"{path}: no held-out set; run `python -m policy_training.recipe prepare` first")
    entries = json.loads(path.read_text())["problems"]
    for entry in entries:
        file = state / "heldout" / f"{entry['name']}.py"
        if not file.is_file() or source_hash(file.read_text()) != entry["hash"]:
            raise TrainingError(f"{file}: missing or changed since the held-out set was fixed ({HELD_OUT})")
    return entries


# ----------------------------------------------------------------------------- the steps

def model_of(run: Run, stage: str, log=print) -> str:
    """The model a stage trained: its own OUT/model where this machine has it, else rebuilt from the
    base and the chain of adapters (a stage that saved none, an rft without positives, is skipped)."""
    if stage == "base":
        return run.base
    own = run.state / stage / MODEL
    if (own / "config.json").is_file():
        return str(own)
    rebuilt = run.state / stage / "rebuilt"
    if (rebuilt / MODEL / "config.json").is_file():
        return str(rebuilt / MODEL)
    adapters = tuple(run.state / s / "adapter" for s in CHAIN[stage] if (run.state / s / "adapter").is_dir())
    if not adapters:
        return run.base
    from policy_training.merge import MergeConfig, run_merge

    log(f"recipe: rebuilding {stage}'s model from the base and {len(adapters)} adapter(s)")
    run_merge(MergeConfig(base=run.base, adapters=adapters, out=rebuilt), log)
    return str(rebuilt / MODEL)


def teacher(run: Run, log) -> dict:
    from policy_training.collect import CollectConfig, run_collect
    from policy_training.export import ExportConfig, export

    c = run.config
    collected = run_collect(CollectConfig(out=run.state / "teacher", problem_set=run.state / "problems" / "manifest.json",
                                          max_turns=c.teacher_turns, lanes=c.lanes, cpu=c.cpu, untimed=True,
                                          db=run.db), log)
    exported = export(ExportConfig(out=run.state / "data", db=run.db, policies=("builtin",), held_out_fraction=0.0))
    return {"collect": collected["mentors"], "export": {k: v for k, v in exported.items() if k != "config"}}


def eval_builtin(run: Run, log) -> dict:
    from policy_training.collect import CollectConfig, run_collect

    c = run.config
    collected = run_collect(CollectConfig(out=run.state / "eval" / "builtin", problems=(run.state / "heldout",),
                                          max_turns=c.teacher_turns, lanes=c.lanes, cpu=c.cpu, db=run.eval_db), log)
    return {"collect": collected["mentors"]}


def evaluate(stage: str) -> Callable[[Run, Callable], dict]:
    def step(run: Run, log) -> dict:
        from policy_training.evaluate import EvaluateConfig, run_evaluate

        c = run.config
        return run_evaluate(EvaluateConfig(
            model=model_of(run, stage, log), out=run.state / "eval" / stage, problems=(run.state / "heldout",),
            k=c.eval_k, temperature=c.eval_temperature, max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size,
            static_cache=c.static_cache, grading_lanes=c.grading_lanes, db=run.eval_db, cpu=c.cpu, bf16=not c.cpu), log)
    return step


def sft(run: Run, log) -> dict:
    from policy_training.sft import Device, SFTConfig, run_sft

    c = run.config
    return run_sft(SFTConfig(model=run.base, data=run.state / "data", out=run.state / "sft", peft=c.peft, lora_r=c.lora_r,
                             lora_alpha=2 * c.lora_r, epochs=c.sft_epochs, learning_rate=c.sft_learning_rate,
                             max_length=c.max_length, device=Device.CPU if c.cpu else Device.AUTO), log)


def rft(run: Run, log) -> dict:
    from policy_training.rft import RFTConfig, run_rft
    from policy_training.sft import Device

    c = run.config
    return run_rft(RFTConfig(model=model_of(run, "sft", log), out=run.state / "rft", problem_set=run.state / "problems" /
                             "manifest.json", k=c.rft_k, generate_batch=c.rft_generate_batch,
                             max_new_tokens=c.max_new_tokens, static_cache=c.static_cache, db=run.db, cpu=c.cpu,
                             grading_lanes=c.grading_lanes,
                             peft=c.peft, lora_r=c.lora_r, lora_alpha=2 * c.lora_r, learning_rate=c.rft_learning_rate,
                             max_length=c.max_length, device=Device.CPU if c.cpu else Device.AUTO), log)


def grpo(stage: str, exemplars: bool) -> Callable[[Run, Callable], dict]:
    def step(run: Run, log) -> dict:
        from policy_training.grpo import GRPOStageConfig, run_grpo
        from policy_training.sft import Device

        c = run.config
        return run_grpo(GRPOStageConfig(
            model=model_of(run, "rft", log), out=run.state / stage, problem_set=run.state / "problems" / "manifest.json",
            exemplars=c.exemplars if exemplars else 0, max_steps=c.grpo_steps, num_generations=c.num_generations,
            prompts_per_step=c.grpo_prompts_per_step, steps_per_generation=c.grpo_steps_per_generation,
            max_new_tokens=c.max_new_tokens, static_cache=c.static_cache, db=run.db, cpu=c.cpu, peft=c.peft,
            grading_lanes=c.grading_lanes,
            lora_r=c.lora_r, lora_alpha=2 * c.lora_r, learning_rate=c.grpo_learning_rate, bf16=not c.cpu,
            device=Device.CPU if c.cpu else Device.AUTO), log)
    return step


RUNNERS: dict[str, Callable[[Run, Callable], dict]] = {
    "teacher": teacher, "eval-builtin": eval_builtin, "eval-base": evaluate("base"), "sft": sft,
    "eval-sft": evaluate("sft"), "rft": rft, "eval-rft": evaluate("rft"), "grpo": grpo("grpo", True),
    "eval-grpo": evaluate("grpo"), "grpo-plain": grpo("grpo-plain", False), "eval-grpo-plain": evaluate("grpo-plain"),
}


def marker(state: Path, step: str) -> Path:
    return state / "steps" / f"{step}.json"


class StepClock:
    """A step's seconds over every run that worked on it. A run cut by its call's bound (kill, timeout)
    leaves STATE/steps/<step>.partial, the seconds so far, rewritten every `beat` seconds; the run
    that finishes the step adds them (so a resumed step's cost is its whole cost, to within `beat`
    seconds a cut) and counts the runs."""

    def __init__(self, state: Path, step: str, beat: float = 10.0):
        self.path = state / "steps" / f"{step}.partial"
        earlier = json.loads(self.path.read_text()) if self.path.is_file() else {"seconds": 0.0, "runs": 0}
        self.earlier, self.runs = float(earlier["seconds"]), int(earlier["runs"]) + 1
        self.began, self.beat, self.stop = time.monotonic(), beat, threading.Event()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write()
        threading.Thread(target=self.beating, daemon=True).start()

    def seconds(self) -> float:
        return round(self.earlier + time.monotonic() - self.began, 1)

    def write(self) -> None:
        self.path.write_text(json.dumps({"seconds": self.seconds(), "runs": self.runs}))

    def beating(self) -> None:
        while not self.stop.wait(self.beat):
            self.write()

    def finish(self) -> dict:
        self.stop.set()
        self.path.unlink(missing_ok=True)
        return {"seconds": self.seconds(), "runs": self.runs}


def run_steps(run: Run, steps: tuple[str, ...] = STEPS, deadline: float | None = None, log=print) -> list[str]:
    """Each step of `steps` not yet done, in STEPS order, none started after `deadline` seconds;
    the steps this call finished."""
    check_held_out(run.state)
    for folder in ("home", "eval"):              # the stores' folders (SQLite makes no folder)
        (run.state / folder).mkdir(parents=True, exist_ok=True)
    started, done = time.monotonic(), []
    for step in [s for s in STEPS if s in steps]:
        if marker(run.state, step).is_file():
            continue
        if deadline is not None and time.monotonic() - started >= deadline:
            log(f"recipe: deadline ({deadline:.0f} s) reached; {step} and what follows wait for the next run")
            break
        log(f"recipe: {step}")
        clock = StepClock(run.state, step)
        with home(run.state / "home"):
            summary = RUNNERS[step](run, log)
        record = {"step": step, **clock.finish(), "device": device_name(run.config.cpu),
                  "commit": own_commit(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "versions": versions(), "summary": summary}
        marker(run.state, step).write_text(json.dumps(record, indent=1, default=str) + "\n")
        done.append(step)
    return done


def device_name(cpu: bool) -> str:
    found = detect(force_cpu=cpu)
    return "cpu (Triton interpreter)" if found.mode is Mode.CPU_INTERPRETER else found.name


# ----------------------------------------------------------------------------- the command line

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m policy_training.recipe", description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb, text in (("prepare", "fix the training problems and the held-out set (no model, no GPU)"),
                       ("run", "the next steps not yet done"), ("report", "the table and the learning curves")):
        v = verbs.add_parser(verb, help=text, description=text)
        v.add_argument("--state", type=Path, required=True, help="the run's folder")
        v.add_argument("--config", type=Path, help="a TOML file of RecipeConfig keys")
        v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key")
    verbs.choices["prepare"].add_argument("--kernelbench", type=Path, required=True, help="a KernelBench checkout")
    verbs.choices["run"].add_argument("--base", required=True, help="the base model directory")
    verbs.choices["run"].add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of: {', '.join(STEPS)}")
    verbs.choices["run"].add_argument("--deadline", type=float, help="seconds after which no step starts")
    verbs.choices["report"].add_argument("--out", type=Path, required=True, help="where the table and the PNGs go")
    for verb, text in (("pack", "STATE as one archive to commit, without models or KernelBench's files "
                                "(policy_training/recipe_state.py)"),
                       ("unpack", "an archive of `pack` into a new STATE, KernelBench's held-out files copied back")):
        v = verbs.add_parser(verb, help=text, description=text)
        v.add_argument("--state", type=Path, required=True, help="the run's folder")
    verbs.choices["pack"].add_argument("--out", type=Path, required=True, help="the archive to write (.tgz)")
    verbs.choices["unpack"].add_argument("--archive", type=Path, required=True, help="an archive written by pack")
    verbs.choices["unpack"].add_argument("--kernelbench", type=Path, required=True, help="a KernelBench checkout")
    return p


def archive(args) -> str:
    """`pack` or `unpack`; the line to print."""
    from policy_training import recipe_state

    if args.verb == "pack":
        check_held_out(args.state)
        return f"recipe: {recipe_state.pack(args.state, args.out)} files of {args.state} in {args.out}"
    if not args.archive.is_file():
        raise TrainingError(f"{args.archive}: no such archive")
    try:
        files = recipe_state.extract(args.archive, args.state)
    except (tarfile.TarError, OSError) as error:        # a full folder, a damaged or climbing archive
        raise TrainingError(f"cannot unpack {args.archive}: {error}") from error
    copied = attach_kernelbench(args.state, args.kernelbench.expanduser())
    check_held_out(args.state)
    return f"recipe: {files} files into {args.state}, {copied} KernelBench files from {args.kernelbench}; held-out set checked"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if args.verb in ("pack", "unpack"):
            print(archive(args))
            return 0
        config = load_config(RecipeConfig, args.config, args.set)
        if args.verb == "prepare":
            prepare(args.state, config, args.kernelbench.expanduser())
        elif args.verb == "run":
            steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
            unknown = [s for s in steps if s not in STEPS]
            if unknown:
                raise ConfigError(f"unknown step(s) {', '.join(unknown)}: choose from {', '.join(STEPS)}")
            done = run_steps(Run(args.state, args.base, config), steps, args.deadline)
            print(f"recipe: done this run: {', '.join(done) or 'nothing'}")
        else:
            from policy_training.recipe_report import write_report
            check_held_out(args.state)
            print(write_report(args.state, args.out, STEPS))
    except (ConfigError, TrainingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
