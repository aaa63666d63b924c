"""Retraining the policy (SFT, rejection sampling, contrastive GRPO): not built yet."""
