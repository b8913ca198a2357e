"""Prometheus metrics, created per process in their own registry (never at import time).

Every metric is listed in docs/metrics.md; labels stay low-cardinality (never a run id,
user or alert name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COUNTS = (0, 1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


class Metrics:
    """The run engine's metrics, in one registry. Components add theirs here as they are built."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.alerts_received = Counter(
            "incident_bot_alerts_received_total", "Alerts received.", ["source"], registry=r
        )
        self.alerts_deduplicated = Counter(
            "incident_bot_alerts_deduplicated_total",
            "Alerts folded into a run that was already open.",
            ["source"],
            registry=r,
        )
        self.webhooks_shed = Counter(
            "incident_bot_webhooks_shed_total",
            "Webhook requests answered 503 at once: too many were in flight.",
            ["source"],
            registry=r,
        )
        self.paused = Gauge(
            "incident_bot_paused",
            "1 while the bot is paused (the kill switch), else 0.",
            registry=r,
        )
        self.queue_depth = Gauge(
            "incident_bot_queue_depth", "Entries in the work queue.", registry=r
        )
        self.queue_oldest_age = Gauge(
            "incident_bot_queue_oldest_age_seconds",
            "Age of the oldest entry in the work queue.",
            registry=r,
        )
        self.dead_letters = Counter(
            "incident_bot_dead_letters_total",
            "Queue entries parked in the dead-letter stream after their drives kept failing.",
            registry=r,
        )
        self.runs_started = Counter(
            "incident_bot_runs_started_total", "Runs started.", ["trigger"], registry=r
        )
        self.runs_finished = Counter(
            "incident_bot_runs_finished_total", "Runs ended, by outcome.", ["outcome"], registry=r
        )
        self.runs = Gauge(
            "incident_bot_runs",
            "Runs this process is working on, by state.",
            ["state"],
            registry=r,
        )
        self.investigation_duration = Histogram(
            "incident_bot_investigation_duration_seconds",
            "Time from the start of an investigation to its proposal or conclusion.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.run_steps = Histogram(
            "incident_bot_run_steps",
            "Transcript steps of a finished investigation.",
            buckets=(2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        # Per-run figures, observed once when a run ends (`Checkpointer.write`).
        self.run_cost = Histogram(
            "incident_bot_run_cost_dollars",
            "Estimated model spend of an ended run, by its final status.",
            ["status"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.run_tool_calls = Histogram(
            "incident_bot_run_tool_calls",
            "Tool calls of an ended run, by its final status.",
            ["status"],
            buckets=_COUNTS,
            registry=r,
        )
        self.run_model_calls = Histogram(
            "incident_bot_run_model_calls",
            "Messages API calls of an ended run (every model), by its final status.",
            ["status"],
            buckets=_COUNTS,
            registry=r,
        )
        self.run_duration = Histogram(
            "incident_bot_run_duration_seconds",
            "From a run's creation to its end, by its final status.",
            ["status"],
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400),
            registry=r,
        )
        self.runs_ended = Counter(
            "incident_bot_runs_ended_total",
            "Ended runs, by whether they ended needing a person (needs_attention, failed, "
            "expired).",
            ["escalated"],
            registry=r,
        )
        self.model_requests = Counter(
            "incident_bot_model_requests_total",
            "Messages API requests.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_request_duration = Histogram(
            "incident_bot_model_request_duration_seconds",
            "Messages API request time.",
            ["model"],
            buckets=_SECONDS,
            registry=r,
        )
        self.model_tokens = Counter(
            "incident_bot_model_tokens_total",
            "Tokens used, by kind.",
            ["model", "kind"],
            registry=r,
        )
        self.model_cost = Counter(
            "incident_bot_model_cost_dollars_total",
            "Estimated model spend.",
            ["model"],
            registry=r,
        )
        self.compactions = Counter(
            "incident_bot_compactions_total",
            "Transcripts compacted before a model call (share: past the configured share of "
            "the context window; overflow: after a reply ran into it).",
            ["reason"],
            registry=r,
        )
        self.tool_calls = Counter(
            "incident_bot_tool_calls_total",
            "Tool calls, by status.",
            ["tool", "status"],
            registry=r,
        )
        self.tool_call_duration = Histogram(
            "incident_bot_tool_call_duration_seconds",
            "Tool call time.",
            ["tool"],
            buckets=_SECONDS,
            registry=r,
        )
        self.loops_detected = Counter(
            "incident_bot_loops_detected_total",
            "Models found looping (kind: repeated_call, no_progress), told or stopped.",
            ["kind", "outcome"],
            registry=r,
        )
        self.approvals = Counter(
            "incident_bot_approvals_total", "Decisions recorded.", ["decision"], registry=r
        )
        self.time_to_decision = Histogram(
            "incident_bot_time_to_decision_seconds",
            "From proposal to the decision that ended it.",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.actions = Counter(
            "incident_bot_actions_total",
            "Actions executed, by outcome.",
            ["action", "outcome"],
            registry=r,
        )
        self.slack_api_calls = Counter(
            "incident_bot_slack_api_calls_total",
            "Slack Web API calls, by method and outcome (ok, error, rate_limited, ...).",
            ["method", "outcome"],
            registry=r,
        )
        self.charts = Counter(
            "incident_bot_charts_total",
            "Charts for a run's thread (signal, recovery), by outcome (uploaded, no_data, "
            "duplicate, failed).",
            ["chart", "outcome"],
            registry=r,
        )
        self.checkpoint_write = Histogram(
            "incident_bot_checkpoint_write_duration_seconds",
            "Checkpoint write time.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=r,
        )
        self.redactions = Counter(
            "incident_bot_redactions_total",
            "Secrets replaced in untrusted text, by kind and where the text entered.",
            ["kind", "where"],
            registry=r,
        )
        self.sweeper_actions = Counter(
            "incident_bot_sweeper_actions_total",
            "What the sweeper did: expired, deadline, requeued, reposted, scheduled, unlisted.",
            ["action"],
            registry=r,
        )
        self.sweeper_last_pass = Gauge(
            "incident_bot_sweeper_last_pass_timestamp_seconds",
            "When this replica's sweeper last finished a pass (Unix time).",
            registry=r,
        )
        self.injection_flags = Counter(
            "incident_bot_injection_flags_total",
            "Untrusted texts that addressed the model or the bot, by where they entered.",
            ["where"],
            registry=r,
        )
        self.ready = Gauge(
            "incident_bot_ready",
            "1 when this replica's readiness checks pass (as /readyz), else 0; set at each "
            "/readyz and /metrics.",
            registry=r,
        )
        self.worker_heartbeat = Gauge(
            "incident_bot_worker_heartbeat_timestamp_seconds",
            "When a worker of this replica last went round its loop (a queue read returned "
            "or timed out; Unix time).",
            registry=r,
        )
        self.approvals_overdue = Gauge(
            "incident_bot_approvals_overdue",
            "Runs awaiting approval whose approval timeout passed more than two sweep "
            "intervals ago (counted at each sweeper pass).",
            registry=r,
        )
        self.event_loop_lag = Histogram(
            "incident_bot_event_loop_lag_seconds",
            "How late a periodic sleep on the event loop woke (sampled every 0.1 s): time the "
            "loop ran something without yielding, or the process waited for a CPU.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.daily_budget_used = Gauge(
            "incident_bot_daily_budget_used_ratio",
            "Today's (UTC) model spend over the policy's budgets.per_day, by kind (tokens, "
            "dollars); absent for a kind without a daily budget.",
            ["kind"],
            registry=r,
        )
