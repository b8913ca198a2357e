"""What counts as a secret: the detectors behind `tools.redaction`.

detect-secrets' format plugins (AWS key ids, Azure storage keys, URL credentials, Slack,
Stripe, SendGrid, Twilio, Mailchimp, PyPI, Square, Discord, Telegram) and its JWT validity
check, plus our patterns for what they miss: passwords in URLs and connection strings,
keyword pairs (`password=`, `"token": "..."`, YAML, CLI flags, Kubernetes env entries,
prose), bearer and basic credentials, cookies, PEM private keys (also base64-encoded), AWS
secret keys, Azure SAS keys and signatures, and token formats (GitHub, GitLab, Anthropic,
OpenAI, Google, Vault, npm).

Not used: detect-secrets' high-entropy plugins (they would eat image digests and git SHAs),
its KeywordDetector (on our corpus, in its config-file mode, it flags 10 of 140 near
misses such as `password_policy: strict` and finds 42 of 123 secrets), its JWT, npm and
OpenAI patterns (unbounded; see `PluginDetector`), and its GitHub and GitLab plugins: their
patterns capture the token's prefix (`(ghp|gho|...)_...`), so they report `ghp` or `glpat`
and never the token (a GitLab personal access token went through unredacted).

Patterns marked `(?i)` are written in lowercase and scan the folded text. Most start with a
literal, which lets the regex engine skip ahead instead of trying every position.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from functools import cache

from tools.secret_detectors import (
    KEYWORD,
    NEWLINE,
    STRUCTURE,
    VENDOR,
    Catalog,
    Detector,
    PemDetector,
    PluginDetector,
    RegexDetector,
    fold,
)


@cache
def catalog() -> Catalog:
    """Every detector, built once on first use."""
    return Catalog([*_plugin_detectors(), *_vendor_patterns(), *_keyword_patterns()])


def name_kind(name: str) -> str | None:
    """The kind of secret a field of this name holds (`DB_PASSWORD`, `client_secret`,
    `api_key`) when its value is an `assigned_value`; None: the name sounds like no
    secret."""
    folded = fold(name)
    return next((kind for kind, pattern in _field_names() if pattern.search(folded)), None)


@cache
def _field_names() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((kind, re.compile(keyword + r"\Z")) for kind, keyword, _hint in _ASSIGNED)


def _tokenish(value: str) -> bool:
    """Looks generated: letters and digits, or long and mixed-case (not a plain word)."""
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    mixed_case = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return (has_digit and has_alpha) or (len(value) >= 32 and mixed_case)


def _passwordish(value: str) -> bool:
    """A word in prose that looks like a password: letters with digits or symbols."""
    has_alpha = any(c.isalpha() for c in value)
    return has_alpha and any(not c.isalpha() for c in value)


def _basic_credentials(value: str) -> bool:
    """Base64 that decodes to `user:password`."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and decoded.isascii()


_NOT_SECRET = frozenset(
    "null none nil true false yes no empty redacted required optional missing invalid "
    "unset undefined n/a string hidden masked".split()
)


def _jwt(value: str) -> bool:
    """`header.payload[.signature]`: a JSON payload, or one detect-secrets' JWT plugin
    finds formally valid."""
    if value.partition(".")[2].startswith("eyJ"):
        return True
    from detect_secrets.plugins.jwt import JwtTokenDetector  # heavy: imported on first use

    return JwtTokenDetector.is_formally_valid(value)


def _base64_private_key(value: str) -> bool:
    """Base64 of a PEM private key, as in a Kubernetes Secret's `data`."""
    head = value[:64]
    try:
        decoded = base64.b64decode(head[: len(head) - len(head) % 4], validate=True)
    except (binascii.Error, ValueError):
        return False
    return b"PRIVATE KEY" in decoded


def assigned_value(value: str) -> bool:
    """A value assigned to a secret-sounding key, unless it is a reference or a mask."""
    if value.lower() in _NOT_SECRET or set(value) <= set("*xX.•#-"):
        return False
    if value.isdigit() and len(value) < 6:  # a size or a count (`password:  12 bytes`)
        return False
    return not value.startswith(("${", "$(", "{{", "%(", "%s", "<"))


def _keyword_kind(key: str) -> str:
    if "pass" in key or "pwd" in key:
        return "password"
    if "token" in key:
        return "token"
    if "private" in key:
        return "private_key"
    if "key" in key and not key.startswith(("secret", "signing", "encryption", "master")):
        return "api_key"
    return "secret"


def _rx(
    kind: str | Callable[[str], str],
    rank: int,
    pattern: str,
    hints: tuple[str, ...],
    accept: Callable[[str], bool] | None = None,
) -> RegexDetector:
    folded = pattern.startswith("(?i)")  # lowercase, scans the folded text
    return RegexDetector(
        kind=kind,
        rank=rank,
        pattern=re.compile(pattern.removeprefix("(?i)")),
        hints=hints,
        folded=folded,
        accept=accept,
    )


def _vendor_patterns() -> list[Detector]:
    return [
        _rx("azure_storage_key", VENDOR, r"AccountKey=(?P<v>[A-Za-z0-9+/]{20,200}={0,2})",
            ("accountkey=",)),
        _rx("azure_sas", VENDOR, r"(?i)sharedaccesskey=(?P<v>[A-Za-z0-9+/]{20,200}={0,2})",
            ("sharedaccesskey=",)),
        _rx("slack_token", VENDOR, r"x(?:ox[abposre]|app)-[A-Za-z0-9-]{10,250}",
            ("xox", "xapp-")),
        _rx("slack_webhook", VENDOR,
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,200}",
            ("hooks.slack.com",)),
        _rx("github_token", VENDOR,
            r"(?:gh[pousr]_[A-Za-z0-9]{30,251}|github_pat_[A-Za-z0-9_]{20,255})",
            # Whole prefixes: `gh` is in "High", "night", "light" (alert names), and a
            # long text pays one scan per hint (`gl`, `hv` stay short for that).
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
        _rx("gitlab_token", VENDOR,
            r"(?:(?:glpat|gldt|glft|glsoat|glrt|glcbt|glimt|glptt|glagent|gloas)-|GR1348941)"
            r"[A-Za-z0-9_-]{20,1024}",
            ("gl", "gr1348941")),
        _rx("stripe_key", VENDOR,
            r"(?:(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,255}|whsec_[A-Za-z0-9]{24,128})",
            ("k_live_", "k_test_", "whsec_")),
        _rx("google_api_key", VENDOR, r"AIza[0-9A-Za-z_-]{35}", ("aiza",)),
        _rx("google_oauth_token", VENDOR, r"ya29\.[0-9A-Za-z_-]{20,2048}", ("ya29.",)),
        _rx("google_client_secret", VENDOR, r"GOCSPX-[0-9A-Za-z_-]{20,64}", ("gocspx-",)),
        _rx("npm_token", VENDOR, r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])", ("npm_",)),
        _rx("vault_token", VENDOR, r"hv[sbr]\.[A-Za-z0-9_-]{20,500}", ("hv",)),
        _rx("anthropic_key", VENDOR, r"sk-ant-[A-Za-z0-9_-]{20,300}", ("sk-ant-",)),
        _rx("openai_key", VENDOR,
            r"sk-(?<![\w-]sk-)(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,300}",
            ("sk-",), _tokenish),
        # Starts only where a run of token characters starts, so 200 KB of `eyJ` is one scan.
        _rx("jwt", STRUCTURE,
            r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{2,4096}={0,2}\.[A-Za-z0-9_-]{2,8192}={0,2}"
            r"(?:\.[A-Za-z0-9_+/=-]{0,4096})?", ("eyj",), _jwt),
        _rx("npm_token", VENDOR, r"(?i):_authtoken=[ \t]{0,8}(?P<v>[^\s\"'`\\]{8,1024})",
            ("_authtoken",), assigned_value),
        _rx("aws_secret_key", STRUCTURE,
            r"(?i)(?:aws_?)?secret_?(?:access_?)?key" + _SEPARATOR
            + r"\\?[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", ("secret",)),
        _rx("url_signature", STRUCTURE,
            r"(?i)(?:sig|signature|x-amz-signature|x-goog-signature|x-amz-security-token)"
            r"=(?P<v>[^&\s#\"'\\,;]{8,4096})", ("sig", "x-amz-security-token"), _tokenish),
        _rx("url_password", STRUCTURE,
            r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\"'\\]{0,128}:(?P<v>[^\s/?#\"'\\]{1,256})@",
            ("://",), assigned_value),
        _rx("url_password", STRUCTURE,
            r"curl\b[^\r\n]{0,200}?[ \t](?:-u|--user)(?:[ \t]{1,8}|=)[\"']?[^\s:\"']{1,128}:"
            r"(?P<v>[^\s\"'\\]{1,256})", ("curl",), assigned_value),
        PemDetector(),
        # base64("-----BEGIN ..."): decoded, it must name a private key (not a certificate).
        _rx("private_key", STRUCTURE, r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,65536}={0,2}",
            ("ls0tls1crudjti",), _base64_private_key),
    ]  # fmt: skip


# Between a key and its value: an optional closing quote or bracket, then `=`, `:`, `:=`
# or `=>`. A value: double-quoted (escapes kept whole), escaped-quoted (JSON in a JSON
# string), single-quoted, or bare up to a delimiter; never a `${...}` reference.
_SEPARATOR = r"\\?[\"']?\]?[ \t]{0,8}(?::=|=>|[:=])[ \t]{0,8}"
# The same, except that after a bare `:` a plain word followed by more words is prose
# (Go error chains: `rotate token: failed to read`, `*v1.Secret: secrets is forbidden`).
_ASSIGN = (
    r"\\?[\"']?\]?[ \t]{0,8}"
    r"(?::=|=>|=|:(?![ \t]{0,8}[a-z]{1,40}[ \t]{1,8}[^\s#]))[ \t]{0,8}"
)
_VALUE = (
    r"(?:\"(?P<dq>(?:[^\"\\\r\n]|\\.){1,1024})\""
    r"|\\\"(?P<eq>[^\"\\\r\n]{1,1024})\\\""
    r"|'(?P<sq>[^'\r\n]{1,1024})'"
    r"|(?![$%][{(])(?P<v>[^\s\"'`\\,;&(){}\[\]<>]{1,1024}))"
)
_KEY_END = r"(?![a-z0-9_.-])"  # the keyword ends the key: `password_policy` is no password
_KEYWORD = (
    r"(?P<key>password|passwd|passphrase|pass(?<![a-z]pass)|pwd(?<=[_-]pwd)|secret|token"
    r"|api[_-]?key|apikey|(?:access|auth|private|secret|signing|encryption|master"
    r"|subscription|license)[_-]?key|credentials?)"
)


def _key_named(*prefixes: str) -> str:
    """`key` preceded by a prefix (and `_`, `-` or nothing), written literal-first."""
    behind = "|".join(f"(?<={prefix}{sep}key)" for prefix in prefixes for sep in ("_", "-", ""))
    return f"key(?:{behind})"


# One pattern per keyword family, each starting with its literal, rather than one
# alternation the engine would try at every `p`, `s`, `t`, `a`...
_ASSIGNED = (
    ("password", r"pass(?:word|wd|phrase|(?<![a-z]pass))", "pass"),
    ("password", r"pwd(?<=[_&?;-]pwd)", "pwd"),  # not a shell's `PWD=/home/...`
    ("secret", r"secret", "secret"),
    ("secret", r"credentials?", "credential"),
    ("token", r"token", "token"),
    ("api_key", _key_named("api", "access", "auth", "subscription", "license"), "key"),
    ("secret", _key_named("secret", "signing", "encryption", "master"), "key"),
    ("private_key", _key_named("private"), "key"),
)


def _keyword_patterns() -> list[Detector]:
    assigned = [
        _rx(kind, KEYWORD, "(?i)" + keyword + _KEY_END + _ASSIGN + _VALUE, (hint,),
            assigned_value)
        for kind, keyword, hint in _ASSIGNED
    ]  # fmt: skip
    return [
        *assigned,
        # Kubernetes env entries: `name: DB_PASSWORD` then `value: ...`
        _rx(_keyword_kind, KEYWORD,
            r"(?i)name(?<![a-z0-9_]name)" + _SEPARATOR + r"\\?[\"']?[a-z0-9_.-]{0,60}?"
            + _KEYWORD + _KEY_END + r"\\?[\"']?[ \t]{0,8}(?:,[ \t]{0,8}|" + NEWLINE
            + r"[ \t]{0,12})\\?[\"']?value" + _ASSIGN + _VALUE, ("value",), assigned_value),
        _rx(_keyword_kind, KEYWORD,
            r"(?i)--(?:[a-z0-9]{1,20}-){0,4}(?P<key>password|passwd|secret|token|api-key|apikey)"
            r"[ \t]{1,8}(?P<v>[^\s\"'`\\,;&(){}\[\]<>-][^\s\"'`\\,;&(){}\[\]<>]{0,1023})",
            ("--",), assigned_value),
        _rx("password", KEYWORD,
            r"(?:redis-cli\b[^\r\n]{0,120}?[ \t]-a|sshpass[ \t]{1,8}-p)"
            r"[ \t]{1,8}(?P<v>[^\s\"'`\\]{1,256})", ("redis-cli", "sshpass")),
        _rx("password", KEYWORD,
            r"(?:mysql|mariadb|mysqldump)\b[^\r\n]{0,200}?[ \t]-p(?P<v>[^\s\"'`\\]{1,256})",
            ("mysql", "mariadb")),
        # Prose: "the password hunter2xyz", "the relay token is 3c9f...".
        _rx("password", KEYWORD,
            r"(?i)(?P<key>password|passphrase|passwd)(?:[ \t]{1,8}(?:is|was|of|to|as|set to|=|:))?"
            r"[ \t]{1,8}[\"'`]?(?P<v>[^\s\"'`\\,;&(){}\[\]<>]{6,256})", ("pass",), _passwordish),
        _rx(_keyword_kind, KEYWORD,
            r"(?i)(?P<key>secret|token|api[ _-]?key)[ \t]{1,8}(?:is|was|value is|=|:)"
            r"[ \t]{1,8}[\"'`]?(?P<v>[^\s\"'`\\,;&(){}\[\]<>]{8,256})",
            ("secret", "token", "key"), _tokenish),
        _rx("bearer_token", KEYWORD, r"(?i)bearer[ \t]{1,8}(?P<v>[A-Za-z0-9._~+/-]{8,16384}=*)",
            ("bearer",), _tokenish),
        _rx("bearer_token", KEYWORD,
            r"(?i)authorization" + _SEPARATOR + r"\\?[\"']?"
            r"(?:(?!bearer\b|basic\b)[a-z][a-z0-9-]{1,20}[ \t]{1,8})?"
            r"(?!aws4-hmac-sha256\b|digest\b|bearer\b|basic\b)(?P<v>[A-Za-z0-9._~+/-]{16,16384}=*)",
            ("authorization",), _tokenish),
        _rx("basic_auth", STRUCTURE,
            r"(?i)basic(?<![a-z0-9_]basic)[ \t]{1,8}(?P<v>[A-Za-z0-9+/]{6,4096}={0,2})"
            r"(?![A-Za-z0-9+/=])", ("basic",), _basic_credentials),
        # The first cookie of a `Cookie:` or `Set-Cookie:` header: usually the session.
        _rx("cookie", KEYWORD,
            r"(?i)cookie\\?[\"']?[ \t]{0,8}:[ \t]{0,8}\\?[\"']?[a-z0-9_.-]{1,64}="
            r"(?P<v>[^\s;,\"'\\]{8,4096})", ("cookie",), _tokenish),
        # Docker config: `"auth": "<base64 of user:password>"`
        _rx("basic_auth", STRUCTURE,
            r"\\?\"auth\\?\"[ \t]{0,8}:[ \t]{0,8}\\?\"(?P<v>[A-Za-z0-9+/]{8,4096}={0,2})\\?\"",
            ("auth",), _basic_credentials),
    ]  # fmt: skip


def _plugin_detectors() -> list[Detector]:
    # Imported here: detect-secrets pulls in `requests`, too heavy for import time.
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    def always(kind: str) -> Callable[[str], str]:
        return lambda _value: kind

    def aws(value: str) -> str:
        is_key_id = value.startswith(("AKIA", "ASIA", "ABIA", "ACCA", "A3T"))
        return "aws_access_key" if is_key_id else "aws_secret_key"

    def slack(value: str) -> str:
        return "slack_webhook" if value.startswith("https://") else "slack_token"

    token_tail = re.compile(r"[A-Za-z0-9_-]{0,512}")
    return [
        PluginDetector(plugin=AWSKeyDetector(), kind=aws,
                       hints=("akia", "asia", "abia", "acca", "a3t", "aws")),
        PluginDetector(plugin=AzureStorageKeyDetector(), kind=always("azure_storage_key"),
                       hints=("accountkey=",), strip_prefix="AccountKey="),
        PluginDetector(plugin=BasicAuthDetector(), kind=always("url_password"), hints=("://",),
                       rank=STRUCTURE, accept=assigned_value),
        PluginDetector(plugin=DiscordBotTokenDetector(), kind=always("discord_token"),
                       hints=(), min_length=59),
        PluginDetector(plugin=MailchimpDetector(), kind=always("mailchimp_key"), hints=("-us",)),
        PluginDetector(plugin=PypiTokenDetector(), kind=always("pypi_token"), hints=("pypi-ag",)),
        PluginDetector(plugin=SendGridDetector(), kind=always("sendgrid_key"), hints=("sg.",)),
        PluginDetector(plugin=SlackDetector(), kind=slack, hints=("xox", "hooks.slack.com"),
                       tail=token_tail),
        PluginDetector(plugin=SquareOAuthDetector(), kind=always("square_token"),
                       hints=("sq0csp-",)),
        PluginDetector(plugin=StripeDetector(), kind=always("stripe_key"), hints=("k_live_",),
                       tail=re.compile(r"[0-9A-Za-z]{0,512}")),
        # Its digits-first pattern is slow to scan for: only near a bot.
        PluginDetector(plugin=TelegramBotTokenDetector(), kind=always("telegram_token"),
                       hints=("bot", "telegram")),
        PluginDetector(plugin=TwilioKeyDetector(), kind=always("twilio_key"), hints=(),
                       min_length=34),
    ]  # fmt: skip
