"""The one redactor: no corpus secret survives, what investigations need does, and its
promises hold (idempotent, JSON stays valid, counts by kind, linear time)."""

from __future__ import annotations

import gc
import hashlib
import json
import random
import re
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.digest_cache import DigestCache
from tools.redaction import Redaction, merge_counts, redact, redact_text, redact_value

FIXTURES = Path(__file__).parent / "fixtures" / "secrets"
SECRETS: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "secrets.yaml").read_text())
NEAR_MISSES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "near_misses.yaml").read_text())
WHERE = {"log", "event", "termination_message", "json", "url", "model_text", "annotation", "yaml"}
# Every kind the issue names, each seen at least once over the corpus.
KINDS = {
    "aws_access_key", "aws_secret_key", "azure_storage_key", "private_key", "google_api_key",
    "slack_token", "slack_webhook", "github_token", "stripe_key", "npm_token", "sendgrid_key",
    "twilio_key", "anthropic_key", "openai_key", "jwt", "bearer_token", "basic_auth",
    "url_password", "password", "secret", "token",
}  # fmt: skip
PLACEHOLDER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")


def _survivors(entry: dict[str, Any], text: str) -> list[str]:
    return [secret for secret in entry["secrets"] if secret in text]


def test_corpora_are_well_formed() -> None:
    assert len(SECRETS) >= 70
    assert len(NEAR_MISSES) >= 70
    ids = [entry["id"] for entry in SECRETS + NEAR_MISSES]
    assert len(ids) == len(set(ids))
    for entry in SECRETS:
        assert entry["where"] in WHERE, entry["id"]
        assert entry["secrets"], entry["id"]
        assert all(secret in entry["text"] for secret in entry["secrets"]), entry["id"]
    assert {entry["where"] for entry in SECRETS} == WHERE


@pytest.mark.parametrize("entry", SECRETS, ids=[e["id"] for e in SECRETS])
def test_no_listed_secret_survives(entry: dict[str, Any]) -> None:
    redaction = redact(entry["text"])
    assert _survivors(entry, redaction.text) == []
    assert sum(redaction.counts.values()) >= 1


def test_detection_rate_over_the_secrets_corpus() -> None:
    missed = [e["id"] for e in SECRETS if _survivors(e, redact(e["text"]).text)]
    detected = len(SECRETS) - len(missed)
    summary = f"secrets corpus: {detected}/{len(SECRETS)} entries fully redacted"
    print(f"{summary} ({detected / len(SECRETS):.1%})")
    assert missed == [], f"{summary}; missed {missed}"


def test_every_kind_is_counted_over_the_corpus() -> None:
    counts = merge_counts(*(redact(entry["text"]).counts for entry in SECRETS))
    assert KINDS <= set(counts), f"never counted: {sorted(KINDS - set(counts))}"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", kind) for kind in counts)
    assert all(isinstance(n, int) and n > 0 for n in counts.values())


def test_near_misses_survive() -> None:
    mangled = [e["id"] for e in NEAR_MISSES if redact(e["text"]).text != e["text"]]
    kept = len(NEAR_MISSES) - len(mangled)
    rate = kept / len(NEAR_MISSES)
    summary = f"near misses: {kept}/{len(NEAR_MISSES)} unchanged ({rate:.1%})"
    print(summary)
    assert rate >= 0.95, f"{summary}; mangled {mangled}"


def test_near_misses_survive_inside_json_strings() -> None:
    as_json = [json.dumps(e["text"]) for e in NEAR_MISSES]
    mangled = [
        e["id"] for e, text in zip(NEAR_MISSES, as_json, strict=True) if redact_text(text) != text
    ]
    rate = 1 - len(mangled) / len(NEAR_MISSES)
    assert rate >= 0.95, f"mangled once JSON-encoded: {mangled}"


@pytest.mark.parametrize(
    "entry", SECRETS + NEAR_MISSES, ids=[e["id"] for e in SECRETS + NEAR_MISSES]
)
def test_redacting_twice_changes_nothing(entry: dict[str, Any]) -> None:
    once = redact(entry["text"])
    twice = redact(once.text)
    assert twice.text == once.text
    assert twice.counts == {}


@pytest.mark.parametrize("entry", SECRETS, ids=[e["id"] for e in SECRETS])
def test_redacting_json_text_keeps_it_valid(entry: dict[str, Any]) -> None:
    """A tool result serialized to JSON, then redacted as text, is still JSON, and the
    secret is gone from the decoded value too (even when the text was JSON already)."""
    document = json.dumps({"where": entry["where"], "output": entry["text"], "exit_code": 1})
    decoded = json.loads(redact_text(document))
    assert decoded["where"] == entry["where"] and decoded["exit_code"] == 1
    assert _survivors(entry, decoded["output"]) == []


def test_placeholders_are_left_alone() -> None:
    for text in (
        "[REDACTED:password]",
        "password=[REDACTED:password] token=[REDACTED:token]",
        '{"password": "[REDACTED:password]"}',
        "postgres://orders:[REDACTED:url_password]@pg:5432/orders",
        "Authorization: Bearer [REDACTED:jwt]",
    ):
        assert redact(text) == Redaction(text=text, counts={})


def test_counts_by_kind() -> None:
    text = (
        "2024-06-11T08:14:02Z login password=Xk4!mPq92z ok\n"
        "2024-06-11T08:14:03Z retry password=Zz8#wQ1nB7 ok\n"
        "env AWS_ACCESS_KEY_ID=AKIAQ3EGRT5YBFHX2K7M\n"
        "clone with ghp_Q2w3E4r5T6y7U8i9O0p1A2s3D4f5G6h7J8k9 done"
    )
    redaction = redact(text)
    assert redaction.counts == {"password": 2, "aws_access_key": 1, "github_token": 1}
    assert redaction.text == (
        "2024-06-11T08:14:02Z login password=[REDACTED:password] ok\n"
        "2024-06-11T08:14:03Z retry password=[REDACTED:password] ok\n"
        "env AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]\n"
        "clone with [REDACTED:github_token] done"
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("key id AKIAQ3EGRT5YBFHX2K7M", "aws_access_key"),
        ("aws_secret_access_key = Wk2x9Zq8Lp4Tn7Rm3Vb6Yc1Hd5Gf0Js8Ka2Qe4Uo", "aws_secret_key"),
        ("AccountKey=" + "Qk9" * 29 + "a==", "azure_storage_key"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        (
            "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/AbCdEfGhIjKlMnOpQrStUvWx",
            "slack_webhook",
        ),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789", "github_token"),
        ("sk_live_" + "a1B2c3D4" * 3, "stripe_key"),
        ("AIza" + "Sy8x2Q9z-Lp4Tn7Rm3Vb6Yc1Hd5Gf0Js8Ka", "google_api_key"),
        ("npm_" + "a1B2c3D4e5" * 3 + "F6g7H8", "npm_token"),
        (
            "SG." + "a1B2c3D4e5F6g7H8i9J0k1" + "." + "L2m3N4o5P6q7R8s9T0u1V2w3X4y5Z6a7B8c9D0e1F2g",
            "sendgrid_key",
        ),
        ("AC" + "0123456789abcdef" * 2, "twilio_key"),
        ("sk-ant-api03-" + "a1B2c3D4e5" * 9, "anthropic_key"),
        ("sk-proj-" + "a1B2c3D4e5" * 8, "openai_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmVfMTIz", "jwt"),
        ("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "bearer_token"),
        ("Authorization: Basic c3ZjOlRyMHViNGRvciYzeA==", "basic_auth"),
        ("redis://:R3d1sPw@redis:6379/0", "url_password"),
        ("DB_PASSWORD=hunter2", "password"),
        ("client_secret: Zq8Lp4Tn7Rm3", "secret"),
        ('"refresh_token": "Zq8Lp4Tn7Rm3"', "token"),
        ("X-API-Key: Zq8Lp4Tn7Rm3Vb6Y", "api_key"),
        ("Cookie: session=Zq8Lp4Tn7Rm3Vb6Y", "cookie"),
        ("hvs.CAESIJx7Qm2pW9zLk4TnRb8Vy3Hd", "vault_token"),
    ],
)
def test_kinds(text: str, kind: str) -> None:
    assert redact(text).counts == {kind: 1}


def test_nothing_found_means_same_text_and_empty_counts() -> None:
    text = 'sum(rate(http_requests_total{code=~"5.."}[5m])) by (service)'
    assert redact(text) == Redaction(text=text, counts={})
    assert redact("") == Redaction(text="", counts={})
    assert redact_text(text) == text


def test_a_value_found_once_is_redacted_wherever_it_recurs() -> None:
    text = "password=Tr0ub4dor-3x in the env; the probe echoes Tr0ub4dor-3x back"
    redaction = redact(text)
    assert "Tr0ub4dor-3x" not in redaction.text
    assert redaction.counts == {"password": 2}


def test_overlapping_hits_take_the_most_specific_kind() -> None:
    token = "ghp_Q2w3E4r5T6y7U8i9O0p1A2s3D4f5G6h7J8k9"
    assert redact(f"password={token}").text == "password=[REDACTED:github_token]"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmVfMTIz"
    assert redact(f"Authorization: Bearer {jwt}").text == "Authorization: Bearer [REDACTED:jwt]"


def test_redact_value_redacts_every_string_and_keeps_json_valid() -> None:
    value: Any = {
        "status": "error",
        "exit_code": 1,
        "ratio": 0.5,
        "ok": False,
        "missing": None,
        "env": [{"name": "DB_PASSWORD", "value": "hunter2-Pr0d!"}],
        "message": 'connect postgres://app:S3cret-9x@pg:5432/app failed: "timeout"\n\\ retry',
        "headers": {"Authorization": "Bearer Q2w3E4r5T6y7U8i9O0p1A2s3"},
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx": "a token as a key",
        "image": "ghcr.io/org/checkout@sha256:" + "ab" * 32,
    }
    before = json.dumps(value)
    redacted, counts = redact_value(value)
    assert json.dumps(value) == before  # the input is not changed
    assert json.loads(json.dumps(redacted)) == redacted
    assert isinstance(redacted, dict)
    assert redacted["env"] == [{"name": "DB_PASSWORD", "value": "[REDACTED:password]"}]
    assert redacted["message"] == (
        'connect postgres://app:[REDACTED:url_password]@pg:5432/app failed: "timeout"\n\\ retry'
    )
    assert redacted["headers"] == {"Authorization": "Bearer [REDACTED:bearer_token]"}
    assert redacted["[REDACTED:slack_token]"] == "a token as a key"
    for key in ("status", "exit_code", "ratio", "ok", "missing", "image"):
        assert redacted[key] == value[key]
    assert counts == {"password": 1, "url_password": 1, "bearer_token": 1, "slack_token": 1}


def test_redact_value_judges_a_string_by_its_field_name() -> None:
    value: Any = {
        "password": "hunter2",
        "client_secret": "plain words",
        "password_policy": "strict",
        "token_bucket_size": "100",
        "api_key": "${API_KEY}",
        "token": "",
        "env": [
            {"name": "REDIS_PASSWORD", "value": "s3cr3t"},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "tags": [{"key": "db_password", "value": "x1"}, {"key": "team", "value": "orders"}],
    }
    redacted, counts = redact_value(value)
    assert redacted == {
        "password": "[REDACTED:password]",
        "client_secret": "[REDACTED:secret]",
        "password_policy": "strict",
        "token_bucket_size": "100",
        "api_key": "${API_KEY}",
        "token": "",
        "env": [
            {"name": "REDIS_PASSWORD", "value": "[REDACTED:password]"},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "tags": [
            {"key": "db_password", "value": "[REDACTED:password]"},
            {"key": "team", "value": "orders"},
        ],
    }
    assert counts == {"password": 3, "secret": 1}


def test_redact_value_on_scalars_and_lists() -> None:
    assert redact_value(None) == (None, {})
    assert redact_value(3) == (3, {})
    assert redact_value(["ok", "token=Q2w3E4r5T6y7U8i9"]) == (
        ["ok", "token=[REDACTED:token]"],
        {"token": 1},
    )


def test_merge_counts_sums_by_kind() -> None:
    assert merge_counts() == {}
    assert merge_counts({"jwt": 1}, {}, {"jwt": 2, "password": 1}) == {"jwt": 3, "password": 1}


PEM_BODY = [
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
    "LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo",
    "9z+40RQzuVaE8AkAFmxZzow3x+VJYKdjykkJ0iT9wCS0DRTXu269V264Vf/3jvre==",
]


def test_a_multi_line_pem_block_is_one_redaction() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY)
    block += "\n-----END RSA PRIVATE KEY-----"
    text = f"08:14:02 INFO writing /etc/tls/tls.key\n{block}\n08:14:03 INFO done"
    redaction = redact(text)
    assert redaction.text == (
        "08:14:02 INFO writing /etc/tls/tls.key\n[REDACTED:private_key]\n08:14:03 INFO done"
    )
    assert redaction.counts == {"private_key": 1}


def test_a_pem_block_cut_short_is_redacted_to_its_end() -> None:
    text = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(PEM_BODY[:2]) + "\n"
    assert redact(text).text == "[REDACTED:private_key]\n"


def test_a_pem_block_inside_json_is_redacted_and_json_stays_valid() -> None:
    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END PRIVATE KEY-----\n"
    document = json.dumps({"type": "service_account", "private_key": key})
    assert json.loads(redact_text(document)) == {
        "type": "service_account",
        "private_key": "[REDACTED:private_key]",
    }


def test_certificates_and_public_keys_are_not_secrets() -> None:
    for kind in ("CERTIFICATE", "PUBLIC KEY"):
        text = f"-----BEGIN {kind}-----\n" + "\n".join(PEM_BODY) + f"\n-----END {kind}-----"
        assert redact_text(text) == text


def _log_text(size: int) -> str:
    lines = []
    for i in range(size // 120 + 1):
        lines.append(
            f'2024-06-11T08:{i % 60:02d}:{i % 60:02d}Z level=info msg="GET /v1/orders/{i} 200" '
            f"request_id=0f8fad5b-d9cb-469f-a165-{i:012d} pod=checkout-7d9f8b6c5-x2x9z"
        )
        if i % 50 == 0:
            lines.append(f"2024-06-11T08:00:00Z ERROR postgres://app:Pw{i:08d}x@pg:5432/app")
    return "\n".join(lines)[:size]


# Inputs that would make a pattern with unbounded or nested quantifiers backtrack for
# minutes: every pattern is bounded, so each of these is one linear scan.
PATHOLOGICAL = {
    "log": _log_text(200_000),
    "letters": "a" * 200_000,
    "jwt-prefixes": "eyJ" * 66_000,
    "jwt-no-signature": ("eyJ" + "a" * 10 + ".") * 14_000,
    "keyword-pairs": "password=" * 22_000,
    "open-quotes": 'password="' * 20_000,
    "url-schemes": "://" * 66_000,
    "url-userinfo": "http://u:" * 22_000,
    "pem-without-end": "-----BEGIN PRIVATE KEY-----\n" + "A" * 200_000,
    "bearer": "Bearer " * 28_000,
    "backslashes": "\\" * 200_000,
    "base64": "QUJD" * 50_000,
    "curl": "curl " * 40_000,
    "distinct-passwords": "".join(f"password=Pw{i:010d}x\n" for i in range(9_000)),
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_200_kb_inputs_finish_quickly(name: str) -> None:
    text = PATHOLOGICAL[name]
    assert len(text) >= 190_000
    redact("warm up: build the detectors")
    started = time.perf_counter()
    redaction = redact(text)
    elapsed = time.perf_counter() - started
    # Linear scans take tens of milliseconds here; backtracking would take minutes.
    assert elapsed < 5.0, f"{name}: {elapsed:.1f}s"
    assert redact(redaction.text).text == redaction.text


def test_importing_the_redactor_loads_no_detector_library() -> None:
    code = "import sys, tools.redaction; print('detect_secrets' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_every_placeholder_in_output_names_a_kind() -> None:
    for entry in SECRETS:
        redaction = redact(entry["text"])
        kinds = PLACEHOLDER.findall(redaction.text)
        assert sum(redaction.counts.values()) == len(kinds), entry["id"]


def _redact_fresh_secret() -> tuple[str, set[str]]:
    """Redact a text holding a secret made now; return the redaction and the digests of
    the secret and the text (nothing that holds either)."""
    alphabet = string.ascii_uppercase + string.digits
    secret = "AKIA" + "".join(random.SystemRandom().choice(alphabet) for _ in range(16))
    text = f"assume role failed: AWS_ACCESS_KEY_ID={secret} region=eu-west-1"
    digests = {hashlib.sha256(s.encode()).hexdigest() for s in (secret, text)}
    return redact(text).text, digests


def test_remembered_redactions_hold_no_raw_secret() -> None:
    """The redaction cache keeps what it computed, never the text it was given: no object
    the collector tracks refers to the secret or the text after they are redacted."""
    redacted, digests = _redact_fresh_secret()
    assert "[REDACTED:" in redacted
    gc.collect()
    held = {
        hashlib.sha256(o.encode()).hexdigest()
        for o in gc.get_referents(*gc.get_objects())
        if isinstance(o, str) and 20 <= len(o) <= 80 and o.startswith(("AKIA", "assume"))
    }
    assert not held & digests


def test_a_digest_cache_tells_arguments_apart_and_forgets_the_oldest() -> None:
    calls: list[tuple[str, ...]] = []

    def joined(*parts: str) -> str:
        calls.append(parts)
        return "|".join(parts)

    cache = DigestCache(joined, maxsize=2)
    assert (cache("ab", "c"), cache("a", "bc")) == ("ab|c", "a|bc")  # not one key
    assert cache("ab", "c") == "ab|c" and len(calls) == 2  # remembered
    cache("x")  # a third: ("ab", "c"), the first computed, is forgotten
    cache("a", "bc")
    cache("ab", "c")
    assert calls == [("ab", "c"), ("a", "bc"), ("x",), ("ab", "c")]


def test_a_digest_cache_remembers_a_computed_none() -> None:
    calls: list[str] = []

    def nothing(text: str) -> None:
        calls.append(text)

    cache: DigestCache[None] = DigestCache(nothing, maxsize=4)
    assert cache("password") is None and cache("password") is None
    assert calls == ["password"]  # most field names have no kind: None is the usual answer
