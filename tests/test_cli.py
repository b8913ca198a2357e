"""The `incident-bot` command as a user runs it: demo, triage, runs, and bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.processes import bot_env, run_bot


@pytest.mark.slow
async def test_demo_runs_offline_on_embedded_defaults_and_the_run_outlives_it(
    tmp_path: Path,
) -> None:
    env = bot_env()  # no REDIS_URL, no ANTHROPIC_API_KEY: embedded Valkey and the planner
    started = time.monotonic()
    code, out, err = await run_bot("demo", "--yes", env=env, cwd=tmp_path)
    elapsed = time.monotonic() - started

    assert code == 0, err
    assert elapsed < 60
    for stage in (
        "[investigating]",
        "[awaiting_approval]",
        "Proposed action: kubernetes.rollback",
        "dry run:",
        "[executing]",
        "[verifying]",
        "[resolved]",
    ):
        assert stage in out, f"{stage!r} missing from:\n{out}"
    assert f"State: embedded Valkey, data and AOF in {tmp_path / '.incident-bot' / 'valkey'}" in out
    # The signal as a sparkline with the proposal (risen), and after the rollback (fallen).
    lines = [line.split() for line in out.splitlines()]
    [signal] = [words for words in lines if words[:1] == ["signal:"]]
    [recovery] = [words for words in lines if words[:1] == ["recovery:"]]
    assert signal[1][0] == "▁" and signal[1][-1] == "█" and "max 0.12, now 0.12" in " ".join(signal)
    assert recovery[1][-1] in "▁▂▃" and "█" in recovery[1], recovery
    # Each tool call is one readable line from the tool's own account, without JSON.
    investigation = out.split("[investigating]")[1].split("[awaiting_approval]")[0]
    calls = [
        line.strip() for line in investigation.splitlines() if line.strip()[:2] in ("✓ ", "✗ ")
    ]
    assert len(calls) == 5, investigation
    assert "✓ Queried the 5xx ratio of http_requests_total for shop/checkout: 0.12" in calls
    logs = "error/timeout/panic lines of shop/checkout in 15 min: most frequent 'upstream timeout"
    assert any(c.startswith("✓ Read ") and logs in c for c in calls), calls
    assert '{"' not in investigation and "→" not in investigation, investigation
    run_id = out.split("Run ")[-1].split(":")[0]

    # A new process reads the finished run back from the embedded server's files.
    code, out, err = await run_bot("runs", "show", run_id, "--json", env=env, cwd=tmp_path)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["run"]["status"] == "resolved"
    assert shown["action"]["state"] == "succeeded"
    events = [e["event"] for e in shown["audit"]]
    assert events.count("action_started") == 1
    assert "verified" in events


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ('{"version": "4", "alerts": []}', "alerts"),
        ('{"labels": {"alertname": "X"}}', "status"),
        ('{"status": "firing", "labels": {"a": 1}}', "labels.a"),
    ],
)
async def test_triage_refuses_bad_alert_files_with_a_message(
    tmp_path: Path, content: str, message: str
) -> None:
    alert = tmp_path / "alert.json"
    alert.write_text(content)
    code, out, err = await run_bot("triage", str(alert), "--yes", env=bot_env(), cwd=tmp_path)
    assert code == 1
    assert message in err
    assert "Traceback" not in err + out
    assert not (tmp_path / ".incident-bot").exists()  # nothing was started or stored


async def test_runs_show_of_an_unknown_run_is_a_clear_error(redis_url: str, tmp_path: Path) -> None:
    code, _, err = await run_bot(
        "runs", "show", "run-missing", env=bot_env(REDIS_URL=redis_url), cwd=tmp_path
    )
    assert code == 1
    assert "no run 'run-missing'" in err
    assert "Traceback" not in err
