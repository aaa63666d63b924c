"""Retraining the policy: the problems to train on (problems.py: a seeded generator,
decontaminated against KernelBench, split by problem hash), the RL reward (reward.py) and
the grader service that serves it (grader/); the training stages (SFT, rejection sampling,
contrastive GRPO) are not built yet."""
