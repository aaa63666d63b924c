"""`kernelpilot train grpo`: contrastive reinforcement learning (CUDA-L1's stage 3) with TRL's GRPOTrainer.

Each prompt is the agent's own (agent/prompts.py `build_messages`) carrying earlier kernels of the
problem with their measured speedups from the store (fast, middling, slow: `exemplars`), rendered
when it is sampled (contrastive.py), so kernels found during the run reach the next prompts. The
model writes its analysis, then the kernel; the reward is policy_training/reward.py's on the real
evaluator's verdict (in-process, or the grader service at `grader_url`), and every graded
candidate is written back to the history store (origin: policy `grpo` or `grader`, model = the
model directory). Generation is transformers' (`use_vllm` off), in contrastive.py's rollout.

Options: `loss_type` grpo | dr_grpo | dapo; `epsilon_high` (clip-higher; DAPO uses 0.28); `beta`
(KL to the starting model; 0 = off, no reference model); `scale_rewards` group | batch | none
(none: Dr. GRPO's unscaled advantages); `num_generations` (the group); the reward's length penalty
(`length_penalty`, `length_budget`) and TRL's soft overlong punishment (`overlong_cache`);
`steps_per_generation` (one generate call feeds that many optimizer steps);
`difficulty` (problems drawn by how often the model failed them); `seeds` (guidance); PEFT none,
lora or dora+rslora (merged on save; the adapter alone is OUT/adapter, and `save_merged = false`
writes only it). OUT/profile.json splits each step into generation, grading and the rest
(forward, backward, update), with peak memory and graded candidates per minute.
Where it departs from CUDA-L1: single-turn episodes; reward smoothing is reward.py's running
per-problem standardisation (±1.5σ); no separate hack detector beyond the evaluator's.

    kernelpilot train grpo --set model=runs/rft/model --set problems=benchmarks/problems --set only=04_* \\
        --set out=runs/grpo --set max_steps=50 --set loss_type=dapo --set epsilon_high=0.28
"""
import json
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from policy_training.config import as_dict
from policy_training.contrastive import (Rollout, StepTimes, difficulty, draw_problems, profile_summary,
                                         reward_function, step_timer)
from policy_training.grading import open_grader
from policy_training.rollouts import RolloutConfig, training_problems
from policy_training.sft import use_cpu
from policy_training.training import (METRICS, load_pretrained, metrics_callback, peft_config, report_to,
                                      require_stack, save_model, saved_line, write_summary)

PROFILE = "profile.json"


class LossType(StrEnum):
    GRPO = "grpo"           # per-sequence mean, then mean over the group
    DR_GRPO = "dr_grpo"     # token sums over a constant (no length bias)
    DAPO = "dapo"           # token-level normalisation over the batch


class ScaleRewards(StrEnum):
    GROUP = "group"
    BATCH = "batch"
    NONE = "none"


@dataclass(frozen=True, kw_only=True)
class GRPOStageConfig(RolloutConfig):
    loss_type: LossType = LossType.DAPO         # grpo, dr_grpo or dapo
    epsilon: float = 0.2                        # the lower clip of the ratio
    epsilon_high: float | None = None           # the upper clip (clip-higher; DAPO 0.28); none: epsilon
    beta: float = 0.0                           # KL coefficient to the starting model; 0: off (no reference model)
    scale_rewards: ScaleRewards = ScaleRewards.GROUP  # advantage scaling: group, batch or none
    num_generations: int = 4                    # completions per prompt (the group)
    prompts_per_step: int = 1                   # distinct problems per optimizer step
    steps_per_generation: int = 1               # optimizer steps per generation round (TRL's): a round draws this
                                                # many steps' groups in one generate call, each step trains on its
                                                # share (later steps slightly off-policy: the ratio is clipped)
    max_steps: int = 10                         # optimizer steps
    exemplars: int = 3                          # earlier kernels per prompt (fast, middling, slow) from the store
    difficulty: bool = False                    # draw problems by how often the model failed them (from the store)
    difficulty_power: float = 1.0               # sharpness of the difficulty weights
    overlong_cache: int = 0                     # >0: TRL's soft overlong punishment over the last N tokens of max_new_tokens
    mask_truncated: bool = False                # leave completions cut at max_new_tokens out of the loss
    bf16: bool = False                          # bfloat16 mixed precision (GPU only)
    logging_steps: int = 1                      # log (metrics.jsonl, TensorBoard) every N steps

    def check(self) -> str | None:
        if self.num_generations < 2:
            return "num_generations must be at least 2 (a group needs a comparison)"
        if self.seeds >= self.num_generations:
            return "seeds must be fewer than num_generations (the group needs the model's own samples)"
        if min(self.prompts_per_step, self.steps_per_generation, self.max_steps, self.logging_steps) < 1 \
                or self.epsilon <= 0 or self.beta < 0:
            return ("prompts_per_step, steps_per_generation, max_steps and logging_steps must be positive, "
                    "epsilon > 0 and beta >= 0")
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            return "epsilon_high must be at least epsilon"
        return super().check()


def trainer_args(config: GRPOStageConfig):
    from trl import GRPOConfig

    batch = config.num_generations * config.prompts_per_step
    return GRPOConfig(
        output_dir=str(config.out / "trainer"), learning_rate=config.learning_rate, max_steps=config.max_steps,
        per_device_train_batch_size=batch, generation_batch_size=batch * config.steps_per_generation,
        num_generations=config.num_generations,
        max_completion_length=config.max_new_tokens, temperature=config.temperature, loss_type=config.loss_type.value,
        epsilon=config.epsilon, epsilon_high=config.epsilon_high, beta=config.beta,
        scale_rewards=config.scale_rewards.value, mask_truncated_completions=config.mask_truncated,
        use_vllm=False, use_cpu=use_cpu(config.device), bf16=config.bf16, seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to=report_to(), shuffle_dataset=False)


def reward_funcs(config: GRPOStageConfig, problems, grader, times) -> list:
    funcs = [reward_function(problems, grader, times)]
    if config.overlong_cache:
        from trl.rewards import get_soft_overlong_punishment

        funcs.append(get_soft_overlong_punishment(config.max_new_tokens, config.overlong_cache))
    return funcs


def run_grpo(config: GRPOStageConfig, log=print, grader=None) -> dict:
    """Train, save OUT/model, write OUT/metrics.jsonl, OUT/profile.json and OUT/summary.json; the
    summary. `grader`: an open one to reuse (tests, smoke), else one is opened from the config."""
    started = time.monotonic()
    require_stack()
    if grader is None:
        with open_grader(config.grading(), "grpo", config.model) as opened:
            return run_grpo(config, log, opened)
    from datasets import Dataset
    from trl import GRPOTrainer

    problems = {p.name: p for p in training_problems(config, grader.size)}
    weights = difficulty(grader.store, list(problems.values()), config.model, config.difficulty_power)
    names = draw_problems(list(problems), weights if config.difficulty else None,
                          max(len(problems), config.max_steps * config.prompts_per_step), config.seed)
    _, tokenizer = load_pretrained(config.model)
    config.out.mkdir(parents=True, exist_ok=True)
    times, metrics = StepTimes(), metrics_callback(config.out / METRICS)
    rollout = Rollout(problems, grader, config, tokenizer, times)
    log(f"grpo: {config.max_steps} step(s), {config.num_generations} per group, loss {config.loss_type.value}, "
        f"peft {config.peft.value}, over {len(problems)} problem(s), grader {config.grader_url or 'in-process'}")
    trainer = GRPOTrainer(model=config.model, reward_funcs=reward_funcs(config, problems, grader, times),
                          args=trainer_args(config), train_dataset=Dataset.from_list([{"prompt": n} for n in names]),
                          processing_class=tokenizer, rollout_func=rollout, callbacks=[metrics, step_timer(times)],
                          peft_config=peft_config(config.peft, config.lora_r, config.lora_alpha, config.lora_dropout))
    trainer.train()
    saved = save_model(trainer.model, tokenizer, config.out, config.model, config.save_merged)
    profile = profile_summary(times)
    (config.out / PROFILE).write_text(json.dumps(profile, indent=1) + "\n")
    rewards = [entry["reward"] for entry in metrics.logged if "reward" in entry]
    return write_summary(config.out, "grpo", started, {
        "steps": trainer.state.global_step, "problems": sorted(problems), "drawn": dict(sorted(Counter(names).items())),
        "difficulty": weights, "reward_first": rewards[0] if rewards else None,
        "reward_last": rewards[-1] if rewards else None, "written_back": grader.written,
        "statuses": dict(grader.statuses), "seeded": times.seeded, "profile": {k: v for k, v in profile.items()
                                                                               if k != "steps"},
        **saved.record(), "started_from": config.model, "grader": config.grader_url or "in-process",
        "store": grader.store.where, "devices": {"policy": str(trainer.model.device), "grader": grader.device.name,
                                                 "grader_mode": grader.device.mode.value}, "config": as_dict(config)})


def summary_line(summary: dict) -> str:
    reward = (f"reward {summary['reward_first']:.3f} -> {summary['reward_last']:.3f}"
              if summary["reward_first"] is not None else "no reward logged")
    mean = summary["profile"].get("mean", {})
    split = (f"; step {mean['step_s']} s = generation {mean['generation_s']} + grading {mean['grading_s']} + "
             f"update {mean['update_s']}" if mean else "")
    return (f"grpo: {summary['steps']} step(s), {reward}, {summary['written_back']} candidate(s) written back"
            f"{split}; {summary['seconds']} s; {saved_line(summary)}")
