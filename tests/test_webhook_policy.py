"""A webhook the policy lists must be https unless it is marked `insecure: true`;
`policy check` names the file and the line of one that is not."""

from __future__ import annotations

from pathlib import Path

from policies.schema import read_policy
from tests.processes import bot_env, run_bot

POLICY = """\
actions:
  - action: webhook.call
webhooks:
  - name: flush
    url: https://automation.example/hooks/flush
  - name: legacy
    url: http://automation.example/hooks/legacy
"""


async def test_policy_check_refuses_plain_http_with_file_and_line(tmp_path: Path) -> None:
    directory = tmp_path / "policy"
    directory.mkdir()
    policy_file = directory / "policy.yaml"
    policy_file.write_text(POLICY)

    code, out, err = await run_bot("policy", "check", str(directory), env=bot_env(), cwd=tmp_path)

    assert code == 1, (out, err)
    assert out.splitlines() == [
        f"{policy_file}:6: webhooks[1]: url http://automation.example/hooks/legacy "
        "is plain http: use https, or add `insecure: true` to this webhook to accept an "
        "unencrypted one"
    ]

    policy_file.write_text(POLICY + "    insecure: true\n")
    code, out, err = await run_bot("policy", "check", str(directory), env=bot_env(), cwd=tmp_path)

    assert code == 0, (out, err)


def test_insecure_is_carried_on_the_webhook_and_off_by_default() -> None:
    policy = read_policy([("p.yaml", POLICY + "    insecure: true\n")])

    assert [(h.name, h.insecure) for h in policy.webhooks] == [("flush", False), ("legacy", True)]
