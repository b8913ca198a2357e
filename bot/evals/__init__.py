"""Scenario evals: load a scenario directory, run it in its own sandbox, score the run.

Read in this order: `scenarios.py` (the files), `replay.py` (recorded model replies served
as the Messages API), `attempt.py` (one run of one scenario), `scorer.py` (pure scoring),
`report.py` (tables, JSON, Markdown). The format is documented in `evals/README.md`.
"""
