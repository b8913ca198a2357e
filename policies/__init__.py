"""Policies and runbooks: YAML that decides what a run may do, and pure functions over it."""
