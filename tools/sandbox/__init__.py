"""A local simulator of the Prometheus, Alertmanager, Loki and Kubernetes APIs, driven by
scenario files."""

from tools.sandbox.app import RunningSandbox, create_sandbox_app, run_sandbox
from tools.sandbox.scenario import Scenario, World, load_scenario

__all__ = [
    "RunningSandbox",
    "Scenario",
    "World",
    "create_sandbox_app",
    "load_scenario",
    "run_sandbox",
]
