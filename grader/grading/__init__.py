"""Grading a submission: the rule catalogue, the checks, reports, the sandbox and batches."""
