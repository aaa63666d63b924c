"""Batch runs: the agent over many problems (`kernelpilot bench`). See runner.py."""
