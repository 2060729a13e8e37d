"""Evaluation: metrics per held-out group, aggregates with intervals, paired tests, verdicts."""
