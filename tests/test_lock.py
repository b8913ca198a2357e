"""The hashed lock files in requirements/ (`make lock`): complete, in agreement with
pyproject.toml and each other, and exactly what the venv the tests run in has installed."""

from __future__ import annotations

import importlib.metadata
import re
import sysconfig
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    """A pip-compile output file as name -> pin; anything that is not `name==version` with
    sha256 hashes (an unpinned line, an option, an editable) fails the test."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[NormalizedName, Pin] = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = frozenset(_HASH.findall(line))
        spec = _HASH.sub("", line).strip()
        assert not spec.startswith("-"), f"{path.name}: an option, not a pin: {line}"
        requirement = Requirement(spec)
        (specifier, *more) = list(requirement.specifier)
        assert specifier.operator == "==" and not more and "*" not in specifier.version, (
            f"{path.name}: {spec} is not pinned to one version"
        )
        assert hashes, f"{path.name}: {requirement.name} has no sha256 hash"
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = Pin(specifier.version, hashes)
    assert pins, f"{path.name} pins nothing"
    return pins


def declared(group: str) -> list[Requirement]:
    """pyproject.toml's requirements: `runtime` ([project] dependencies), `dev` (the extra)
    or `build` ([build-system] requires)."""
    if group == "runtime":
        return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    if group == "dev":
        return [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]
    return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


def closure(roots: list[Requirement]) -> set[NormalizedName]:
    """Every distribution the roots need, transitively, by the installed metadata, with
    markers evaluated here (the lock is compiled for this interpreter and platform)."""
    names: set[NormalizedName] = set()
    expanded: set[tuple[NormalizedName, str]] = set()
    queue = deque((root, "") for root in roots)
    while queue:
        requirement, parent_extra = queue.popleft()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"extra": parent_extra}
        ):
            continue
        name = canonicalize_name(requirement.name)
        names.add(name)
        for key in {(name, extra) for extra in ("", *requirement.extras)} - expanded:
            expanded.add(key)
            extra = key[1]
            try:
                children = importlib.metadata.requires(name) or []
            except importlib.metadata.PackageNotFoundError:
                pytest.fail(f"{name} is not installed: run `make` to install the lock")
            queue.extend((Requirement(child), extra) for child in children)
    return names


@pytest.fixture(scope="module")
def runtime() -> dict[NormalizedName, Pin]:
    return read_lock(LOCKS / "runtime.txt")


@pytest.fixture(scope="module")
def dev() -> dict[NormalizedName, Pin]:
    return read_lock(LOCKS / "dev.txt")


@pytest.mark.parametrize("lock", sorted(p.name for p in LOCKS.glob("*.txt")))
def test_every_lock_pins_one_version_with_hashes(lock: str) -> None:
    read_lock(LOCKS / lock)


@pytest.mark.parametrize("source", sorted(p.name for p in LOCKS.glob("*.in")))
def test_every_input_is_compiled_and_satisfied_by_its_lock(source: str) -> None:
    lock = LOCKS / source.replace(".in", ".txt")
    assert lock.exists(), f"requirements/{source} has no {lock.name}: run `make lock`"
    pins = read_lock(lock)
    for line in (LOCKS / source).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            requirement = Requirement(line)
            pin = pins.get(canonicalize_name(requirement.name))
            assert pin is not None, f"{lock.name} lacks {requirement.name}: run `make lock`"
            assert requirement.specifier.contains(pin.version, prereleases=True)


@pytest.mark.parametrize(
    ("group", "locks"),
    [("runtime", ("runtime.txt", "dev.txt")), ("dev", ("dev.txt",)), ("build", ("build.txt",))],
)
def test_every_declared_dependency_is_locked_within_its_bounds(
    group: str, locks: tuple[str, ...]
) -> None:
    for lock in locks:
        pins = read_lock(LOCKS / lock)
        for requirement in declared(group):
            pin = pins.get(canonicalize_name(requirement.name))
            assert pin is not None, f"{lock} lacks {requirement}: run `make lock`"
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock} pins {requirement.name}=={pin.version}, outside {requirement}"
            )


def test_runtime_and_dev_locks_pin_shared_packages_alike(
    runtime: dict[NormalizedName, Pin], dev: dict[NormalizedName, Pin]
) -> None:
    assert runtime.keys() <= dev.keys(), f"dev.txt lacks {sorted(runtime.keys() - dev.keys())}"
    differ = {name: (pin, dev[name]) for name, pin in runtime.items() if dev[name] != pin}
    assert not differ, f"runtime.txt and dev.txt disagree on {differ}"


def test_locks_hold_exactly_what_the_declared_dependencies_need(
    runtime: dict[NormalizedName, Pin], dev: dict[NormalizedName, Pin]
) -> None:
    """Nothing needed is missing (the image would not start) and nothing is left over (the
    lock of a removed dependency)."""
    needed = closure(declared("runtime"))
    assert set(runtime) == needed, (
        f"runtime.txt misses {sorted(needed - set(runtime))}, "
        f"has unneeded {sorted(set(runtime) - needed)}: run `make lock`"
    )
    needed = closure(declared("runtime") + declared("dev"))
    assert set(dev) == needed, (
        f"dev.txt misses {sorted(needed - set(dev))}, "
        f"has unneeded {sorted(set(dev) - needed)}: run `make lock`"
    )


def test_the_venv_holds_exactly_the_locked_versions(dev: dict[NormalizedName, Pin]) -> None:
    """What the tests run on is what the image installs (runtime.txt agrees with dev.txt)."""
    locked = dev | read_lock(LOCKS / "build.txt")
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions(path=site)
    }
    installed.pop(PROJECT, None)
    wrong = {
        name: (version, locked[name].version if name in locked else None)
        for name, version in installed.items()
        if name not in locked or locked[name].version != version
    }
    missing = sorted(locked.keys() - installed.keys())
    assert not wrong and not missing, (
        f"installed (version, locked version) {wrong}; not installed {missing}: "
        "run `make` to install the lock"
    )
