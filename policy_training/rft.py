"""`kernelpilot train rft`: self-supervised rejection sampling (CUDA-L1's stage 2).

For each training problem: render the agent's own prompt (agent/prompts.py `build_messages`, as at
inference), sample `k` completions from the current model, grade every one with the real
evaluator (in-process, or the grader service at `grader_url`) and write every one back to the
history store with the model as its origin (policy `rft`, model = the model directory). The
correct, unflagged ones (tools/trust.py, `Use.BEST`), each distinct kernel once per problem,
become SFT rows (`OUT/positives/`, the export's `messages` form) and the model is fine-tuned on
them with the SFT stage's machinery (policy_training/sft.py). `seeds = N` adds the store's best
correct kernels as extra candidates (rollouts.py; they are graded again and counted apart).

When no sample is correct the summary says so (`positives: 0`, `trained: false`) and OUT/model is
the starting model saved unchanged, so the next stage has a model to start from; there is no
OUT/adapter then (`adapter: null`): a chain of adapters goes on from the starting model.
Where it departs from CUDA-L1: one round per run (run it again on its own output for more).

    kernelpilot train rft --set model=runs/sft/model --set problems=benchmarks/problems --set only=04_* \\
        --set k=8 --set out=runs/rft --set cpu=true
"""
import json
import time
from dataclasses import dataclass
from pathlib import Path

from policy_training.config import PeftChoice, as_dict
from policy_training.export import MANIFEST, write_jsonl
from policy_training.grading import Graded, grade_each, open_grader
from policy_training.rollouts import RolloutConfig, prompt_for, seed_completions, training_problems
from policy_training.sampling import sample_batch
from policy_training.sft import SFTConfig, run_sft, use_cpu
from policy_training.training import load_pretrained, require_stack, save_model, saved_line, write_summary

POSITIVES = "positives"


@dataclass(frozen=True, kw_only=True)
class RFTConfig(RolloutConfig):
    k: int = 4                                  # samples per problem
    epochs: float = 1.0                         # passes over the positives (unless max_steps is set)
    max_steps: int | None = None                # optimizer steps of the fine-tune; none: epochs decide
    batch_size: int = 1                         # rows per device per step
    max_length: int = 8192                      # tokens per row (longer rows are cut at the end)
    learning_rate: float = 1e-5                 # peak learning rate of the fine-tune
    generate_batch: int = 8                     # problems per generate call (left-padded; each sampled k times)

    def check(self) -> str | None:
        if min(self.k, self.batch_size, self.generate_batch) < 1 or self.epochs <= 0 or \
                (self.max_steps is not None and self.max_steps < 1):
            return "k, batch_size, generate_batch, epochs and max_steps must be positive"
        return super().check()


@dataclass(frozen=True)
class Candidate:
    problem: str
    origin: str                                 # "model" or "seed"
    graded: Graded
    prompt: list[dict]
    completion: str


def run_rft(config: RFTConfig, log=print, grader=None) -> dict:
    """Sample, grade and record, fine-tune on the positives; the summary. `grader`: an open one to
    reuse (tests, smoke), else one is opened from the config."""
    started = time.monotonic()
    require_stack()
    if grader is None:
        with open_grader(config.grading(), "rft", config.model) as opened:
            return run_rft(config, log, opened)
    model, tokenizer = load_pretrained(config.model)
    model.to("cpu" if use_cpu(config.device) else "cuda")
    candidates = collect_candidates(config, model, tokenizer, grader, log)
    positives = keep_positives(candidates)
    write_candidates(config.out, candidates, positives)
    record = {"problems": sorted({c.problem for c in candidates}), "sampled": sum(c.origin == "model" for c in candidates),
              "seeded": sum(c.origin == "seed" for c in candidates), "written_back": grader.written,
              "statuses": dict(grader.statuses), "positives": len(positives),
              "positives_from_model": sum(c.origin == "model" for c in positives), "started_from": config.model,
              "grader": config.grader_url or "in-process", "store": grader.store.where, "session": grader.session}
    if not positives:
        return untrained(config, model, tokenizer, {**record, "trained": False}, started, log)
    del model
    tuned = run_sft(sft_config(config), log=log)
    return write_summary(config.out, "rft", started, {
        **record, "trained": True, "model": tuned["model"], "adapter": tuned["adapter"], "steps": tuned["steps"],
        "loss_first": tuned["loss_first"], "loss_last": tuned["loss_last"], "config": as_dict(config)})


def untrained(config: RFTConfig, model, tokenizer, record: dict, started: float, log) -> dict:
    """No positive: the starting model saved unchanged (unless save_merged is false), no adapter."""
    log("rft: no correct sample, nothing to fine-tune" + ("; OUT/model is the starting model" if config.save_merged
                                                          else "; no adapter to save"))
    saved = save_model(model, tokenizer, config.out, config.model, config.save_merged)
    note = "no sample was correct: nothing to fine-tune" + (
        "" if config.peft is PeftChoice.NONE else "; no adapter: a chain of adapters goes on from the starting model")
    return write_summary(config.out, "rft", started, {**record, **saved.record(), "note": note,
                                                      "config": as_dict(config)})


def collect_candidates(config: RFTConfig, model, tokenizer, grader, log) -> list[Candidate]:
    """Every problem's k samples, drawn `generate_batch` problems to a generate call, graded in order."""
    import torch

    torch.manual_seed(config.seed)
    problems, found = training_problems(config, grader.size), []
    for start in range(0, len(problems), config.generate_batch):
        batch = problems[start:start + config.generate_batch]
        prompts = [prompt_for(p, config.backend, grader.device, grader.store, config.exemplars) for p in batch]
        drawn = sample_batch(model, tokenizer, prompts, config.k, config.max_new_tokens, config.temperature,
                             static_cache=config.static_cache)
        texts = [(problem, prompt, s.text, len(s.ids), "model")
                 for problem, prompt, samples in zip(batch, prompts, drawn) for s in samples]
        texts += [(problem, prompt, text, None, "seed") for problem, prompt in zip(batch, prompts)
                  for text in seed_completions(grader.store, problem, config.seeds)]
        verdicts = grade_each(grader, [(problem, text, tokens) for problem, _, text, tokens, _ in texts])
        for (problem, prompt, text, _, origin), graded in zip(texts, verdicts):
            found.append(Candidate(problem.name, origin, graded, prompt, text))
        for problem in batch:
            mine = [c for c in found if c.problem == problem.name]
            log(f"rft: {problem.name}: {len(mine)} candidate(s) graded and recorded, "
                f"{sum(c.graded.usable for c in mine)} correct")
    return found


def keep_positives(candidates: list[Candidate]) -> list[Candidate]:
    """The usable candidates, each distinct kernel once per problem (the model's own first)."""
    kept, seen = [], set()
    for c in sorted(candidates, key=lambda c: c.origin != "model"):
        key = (c.graded.problem_hash, c.graded.candidate)
        if c.graded.usable and key not in seen:
            seen.add(key)
            kept.append(c)
    return kept


def write_candidates(out: Path, candidates: list[Candidate], positives: list[Candidate]) -> None:
    """OUT/candidates.jsonl (every graded one) and OUT/positives/ (SFT rows in the export's layout)."""
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "candidates.jsonl", [{"problem": c.problem, "origin": c.origin, "status": c.graded.status
                                            and c.graded.status.value, "flags": list(c.graded.flags),
                                            "reward": c.graded.reward, "evaluation_id": c.graded.evaluation_id,
                                            "completion": c.completion} for c in candidates])
    rows = [{"messages": c.prompt + [{"role": "assistant", "content": c.completion}]} for c in positives]
    write_jsonl(out / POSITIVES / "messages" / "train.jsonl", rows)
    (out / POSITIVES / MANIFEST).write_text(json.dumps({"kind": "kernelpilot.rft_positives", "rows": len(rows),
                                                        "evaluations": [c.graded.evaluation_id for c in positives]},
                                                       indent=1) + "\n")


def sft_config(config: RFTConfig) -> SFTConfig:
    return SFTConfig(model=config.model, data=config.out / POSITIVES, out=config.out, peft=config.peft,
                     save_merged=config.save_merged,
                     lora_r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                     learning_rate=config.learning_rate, epochs=config.epochs, max_steps=config.max_steps,
                     batch_size=config.batch_size, max_length=config.max_length, device=config.device,
                     seed=config.seed)


def summary_line(summary: dict) -> str:
    loss = (f", loss {summary['loss_first']:.3f} -> {summary['loss_last']:.3f}"
            if summary.get("loss_first") is not None else "")
    trained = (f"fine-tuned {summary['steps']} step(s){loss}" if summary["trained"]
               else "nothing to fine-tune (no correct sample)")
    return (f"rft: {summary['sampled']} sample(s) + {summary['seeded']} seed(s) over {len(summary['problems'])} "
            f"problem(s), {summary['written_back']} written back, {summary['positives']} positive(s) "
            f"({summary['positives_from_model']} the model's own); {trained}; {summary['seconds']} s; "
            f"{saved_line(summary)}")
