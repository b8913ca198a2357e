"""End-to-end tests against real Prometheus and Alertmanager processes."""
