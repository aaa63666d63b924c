"""Retraining the policy: the RL reward (reward.py) and the grader service that serves it
(grader/); the training stages (SFT, rejection sampling, contrastive GRPO) are not built yet."""
