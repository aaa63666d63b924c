"""The evaluation environment: problems, sandboxes, the evaluator and its records."""
