"""Retraining the policy: the problems to train on (problems.py: a seeded generator,
decontaminated against KernelBench, split by problem hash), the RL reward (reward.py) and
the grader service that serves it (grader/), and the training stages behind `kernelpilot
train` (commands.py): collect (mentors through the bench machinery), export (the best correct
trace per problem as SFT rows, prompts by agent/prompts.py), sft (TRL). Rejection sampling and
contrastive GRPO are not built yet."""
