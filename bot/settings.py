"""Settings, read once from the environment and passed down (never read at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.pricing import ModelPrice

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ValkeyFsync = Literal["everysec", "always", "no"]  # the embedded Valkey's appendfsync
DEFAULT_FAST_MODEL = "claude-haiku-4-5"


class Settings(BaseSettings):
    """Everything the bot reads from its environment.

    Unprefixed names are the ones the wider ecosystem already uses (`REDIS_URL`,
    `ANTHROPIC_API_KEY`, `PROMETHEUS_URL`, `KUBECONFIG`); the rest carry `INCIDENT_BOT_`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    # REDIS_URL names seed nodes of a Redis Cluster (`redis://a:6379,b:6379`), not a server.
    redis_cluster: bool = Field(default=False, alias="INCIDENT_BOT_REDIS_CLUSTER")
    data_dir: Path = Field(default=Path(".incident-bot"), alias="INCIDENT_BOT_DATA_DIR")
    key_prefix: str = Field(default="incident-bot:", alias="INCIDENT_BOT_KEY_PREFIX")
    # Every Redis client: a pool of at most this many connections per process, where a
    # command waits up to the pool timeout for a free one (a burst waits, it does not fail).
    redis_max_connections: int = Field(default=50, ge=1, alias="INCIDENT_BOT_REDIS_MAX_CONNECTIONS")
    redis_pool_timeout_seconds: float = Field(
        default=10.0, gt=0, alias="INCIDENT_BOT_REDIS_POOL_TIMEOUT"
    )
    # At least 1 s: the workers' queue read blocks in Redis for 0.5 s.
    redis_socket_timeout_seconds: float = Field(
        default=5.0, ge=1.0, alias="INCIDENT_BOT_REDIS_SOCKET_TIMEOUT"
    )
    redis_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, alias="INCIDENT_BOT_REDIS_CONNECT_TIMEOUT"
    )
    # A connection idle this long is checked with PING before it is used again.
    redis_health_check_seconds: int = Field(
        default=15, ge=0, alias="INCIDENT_BOT_REDIS_HEALTH_CHECK_INTERVAL"
    )
    # The embedded Valkey's appendfsync (only when REDIS_URL is unset).
    valkey_fsync: ValkeyFsync = Field(default="everysec", alias="INCIDENT_BOT_VALKEY_FSYNC")

    anthropic_api_key: SecretStr | None = Field(default=None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(default=None, alias="ANTHROPIC_BASE_URL")
    model: str = Field(default="claude-sonnet-4-6", alias="INCIDENT_BOT_MODEL")
    model_max_tokens: int = Field(default=4096, alias="INCIDENT_BOT_MODEL_MAX_TOKENS")
    model_max_retries: int = Field(default=2, alias="INCIDENT_BOT_MODEL_MAX_RETRIES")
    model_timeout_seconds: float = Field(default=120.0, alias="INCIDENT_BOT_MODEL_TIMEOUT")
    # Compaction summaries and the run's headline; empty: no fast model (no headline).
    fast_model: str = Field(default=DEFAULT_FAST_MODEL, alias="INCIDENT_BOT_FAST_MODEL")
    # Past this share of the context window, the oldest tool results are compacted.
    context_window: int = Field(default=200_000, gt=0, alias="INCIDENT_BOT_CONTEXT_WINDOW")
    compact_at: float = Field(default=0.7, gt=0, le=1, alias="INCIDENT_BOT_COMPACT_AT")
    # JSON: model name or prefix -> dollars per million tokens (see bot/pricing.py).
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict, alias="INCIDENT_BOT_MODEL_PRICES"
    )

    max_steps: int = Field(default=20, alias="INCIDENT_BOT_MAX_STEPS")
    # Model turns in a row without a new tool result before the model is told it loops.
    loop_turns: int = Field(default=4, ge=1, alias="INCIDENT_BOT_LOOP_TURNS")
    token_budget: int = Field(default=400_000, alias="INCIDENT_BOT_TOKEN_BUDGET")
    run_deadline_seconds: float = Field(default=900.0, alias="INCIDENT_BOT_RUN_DEADLINE")
    tool_timeout_seconds: float = Field(default=20.0, alias="INCIDENT_BOT_TOOL_TIMEOUT")
    # An action's execution, all its calls together; also how old an interrupted action's
    # record must be before it may be executed again (its calls have surely ended).
    action_timeout_seconds: float = Field(default=30.0, gt=0, alias="INCIDENT_BOT_ACTION_TIMEOUT")
    lease_seconds: float = Field(default=30.0, alias="INCIDENT_BOT_LEASE_SECONDS")
    # None: the policy's `approval_timeout_seconds`.
    approval_timeout_seconds: float | None = Field(
        default=None, alias="INCIDENT_BOT_APPROVAL_TIMEOUT"
    )
    verify_timeout_seconds: float = Field(default=120.0, alias="INCIDENT_BOT_VERIFY_TIMEOUT")
    verify_interval_seconds: float = Field(default=2.0, alias="INCIDENT_BOT_VERIFY_INTERVAL")
    retention_seconds: int = Field(default=30 * 24 * 3600, alias="INCIDENT_BOT_RETENTION")

    host: str = Field(default="0.0.0.0", alias="INCIDENT_BOT_HOST")  # noqa: S104 - a server
    port: int = Field(default=8080, alias="INCIDENT_BOT_PORT")
    webhook_token: SecretStr | None = Field(default=None, alias="INCIDENT_BOT_WEBHOOK_TOKEN")
    # Without a token `serve` refuses to start unless this says open webhooks are meant
    # (the sandbox); anyone who can reach the port could otherwise start investigations.
    allow_unauthenticated_webhooks: bool = Field(
        default=False, alias="INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS"
    )
    # Set: `POST /webhooks/grafana` takes only bodies that Grafana's contact point signed
    # with this secret (its "HMAC signature" setting), instead of the webhook token.
    grafana_webhook_secret: SecretStr | None = Field(
        default=None, alias="INCIDENT_BOT_GRAFANA_WEBHOOK_SECRET"
    )
    # The contact point's signature header; unset: Grafana's default names.
    grafana_signature_header: str | None = Field(
        default=None, alias="INCIDENT_BOT_GRAFANA_SIGNATURE_HEADER"
    )
    # The contact point's timestamp header, when it has one: then it is required, signed
    # and at most 5 minutes off.
    grafana_timestamp_header: str | None = Field(
        default=None, alias="INCIDENT_BOT_GRAFANA_TIMESTAMP_HEADER"
    )
    # Set: `POST /webhooks/pagerduty` takes only bodies signed with the V3 webhook
    # subscription's secret (`X-PagerDuty-Signature`), instead of the webhook token.
    pagerduty_webhook_secret: SecretStr | None = Field(
        default=None, alias="INCIDENT_BOT_PAGERDUTY_WEBHOOK_SECRET"
    )
    max_body_bytes: int = Field(default=1024 * 1024, alias="INCIDENT_BOT_MAX_BODY_BYTES")
    # Past this many webhook requests in flight, more are answered 503 at once (the sender
    # retries): a flood past what intake can store must not starve the Slack acks and the
    # drives that share the event loop.
    max_webhooks_in_flight: int = Field(
        default=64, ge=1, alias="INCIDENT_BOT_MAX_WEBHOOKS_IN_FLIGHT"
    )
    workers: int = Field(default=4, alias="INCIDENT_BOT_WORKERS")
    # Beside `workers` (none where that is 0), workers that take only resumes: a click is
    # driven at once even while every other worker is on a long investigation.
    resume_workers: int = Field(default=2, ge=0, alias="INCIDENT_BOT_RESUME_WORKERS")
    max_investigations: int = Field(default=20, alias="INCIDENT_BOT_MAX_INVESTIGATIONS")
    max_investigations_per_service: int = Field(
        default=3, alias="INCIDENT_BOT_MAX_INVESTIGATIONS_PER_SERVICE"
    )
    reclaim_after_seconds: float = Field(default=60.0, alias="INCIDENT_BOT_RECLAIM_AFTER")
    shutdown_grace_seconds: float = Field(default=20.0, alias="INCIDENT_BOT_SHUTDOWN_GRACE")
    # How often each replica's sweeper claims due deadlines and (one replica) repairs runs.
    sweep_interval_seconds: float = Field(default=5.0, gt=0, alias="INCIDENT_BOT_SWEEP_INTERVAL")
    # The kill switch held on: the bot starts paused and stays so (`bot.pause`).
    paused: bool = Field(default=False, alias="INCIDENT_BOT_PAUSED")

    policy_dir: Path | None = Field(default=None, alias="INCIDENT_BOT_POLICY_DIR")
    prometheus_url: str | None = Field(default=None, alias="PROMETHEUS_URL")
    kubernetes_url: str | None = Field(default=None, alias="KUBERNETES_URL")
    kubeconfig: Path | None = Field(default=None, alias="KUBECONFIG")
    # Actions write with their own credentials, so a compromised investigation cannot.
    actions_kubeconfig: Path | None = Field(default=None, alias="INCIDENT_BOT_ACTIONS_KUBECONFIG")
    sandbox: str | None = Field(default=None, alias="INCIDENT_BOT_SANDBOX")
    # Where `alertmanager.silence` creates silences.
    alertmanager_url: str | None = Field(default=None, alias="ALERTMANAGER_URL")
    # Signs `webhook.call` requests (HMAC-SHA256) unless the webhook names its own secret_env.
    actions_webhook_secret: SecretStr | None = Field(
        default=None, alias="INCIDENT_BOT_ACTIONS_WEBHOOK_SECRET"
    )

    # Slack: HTTP mode needs the bot token and signing secret; Socket Mode the app token.
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str | None = Field(default=None, alias="SLACK_API_URL")
    slack_socket_mode: bool = Field(default=False, alias="INCIDENT_BOT_SLACK_SOCKET_MODE")
    # False: this replica takes no Slack events (no Socket Mode connection, and
    # `POST /slack/events` answers 404), so it needs neither the signing secret nor the app
    # token; it still posts through the Web API. For intake-only replicas: Slack then hands
    # every event to the replicas that are not taking an alert flood.
    slack_events: bool = Field(default=True, alias="INCIDENT_BOT_SLACK_EVENTS")
    slack_channel: str | None = Field(default=None, alias="INCIDENT_BOT_SLACK_CHANNEL")
    # At most one post per channel, and one progress edit per run, in this many seconds.
    slack_min_interval_seconds: float = Field(default=1.0, alias="INCIDENT_BOT_SLACK_MIN_INTERVAL")

    # Auth and TLS of the read-only tools' backends: a bearer token or basic auth, and a CA
    # bundle for a private CA. Loki's tenant goes in X-Scope-OrgID.
    prometheus_bearer_token: SecretStr | None = Field(default=None, alias="PROMETHEUS_BEARER_TOKEN")
    prometheus_username: str | None = Field(default=None, alias="PROMETHEUS_USERNAME")
    prometheus_password: SecretStr | None = Field(default=None, alias="PROMETHEUS_PASSWORD")
    prometheus_ca_file: Path | None = Field(default=None, alias="PROMETHEUS_CA_FILE")
    alertmanager_bearer_token: SecretStr | None = Field(
        default=None, alias="ALERTMANAGER_BEARER_TOKEN"
    )
    alertmanager_username: str | None = Field(default=None, alias="ALERTMANAGER_USERNAME")
    alertmanager_password: SecretStr | None = Field(default=None, alias="ALERTMANAGER_PASSWORD")
    alertmanager_ca_file: Path | None = Field(default=None, alias="ALERTMANAGER_CA_FILE")
    loki_url: str | None = Field(default=None, alias="LOKI_URL")
    loki_bearer_token: SecretStr | None = Field(default=None, alias="LOKI_BEARER_TOKEN")
    loki_username: str | None = Field(default=None, alias="LOKI_USERNAME")
    loki_password: SecretStr | None = Field(default=None, alias="LOKI_PASSWORD")
    loki_ca_file: Path | None = Field(default=None, alias="LOKI_CA_FILE")
    loki_tenant: str | None = Field(default=None, alias="LOKI_TENANT_ID")

    # `serve` logs at this level; the terminal commands only when it is set (else WARNING).
    log_level: LogLevel = Field(default="INFO", alias="INCIDENT_BOT_LOG_LEVEL")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    def pointed_at_sandbox(self, url: str) -> Settings:
        """These settings with every backend (Prometheus, Kubernetes, Alertmanager, Loki)
        served by the sandbox at `url`, and no kubeconfig."""
        return self.model_copy(
            update={
                "prometheus_url": url,
                "kubernetes_url": url,
                "alertmanager_url": url,
                "loki_url": url,
                "kubeconfig": None,
                "actions_kubeconfig": None,
            }
        )
