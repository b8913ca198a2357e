"""Loading scenario directories: each bad file is named, with the field that is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bot.errors import ConfigError
from bot.evals.scenarios import discover, load_scenario_dir
from tests.processes import ROOT

FIRST = ROOT / "evals" / "scenarios" / "bad-deploy-errors"


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    target = tmp_path / "bad-deploy-errors"
    shutil.copytree(FIRST, target)
    return target


def test_the_first_scenario_loads_as_one_alert_group(scenario: Path) -> None:
    loaded = load_scenario_dir(scenario)
    (alert,) = loaded.alerts
    assert alert.group_labels == {"alertname": "HighErrorRate", "namespace": "shop"}
    assert alert.group_key == '{}:{alertname="HighErrorRate", namespace="shop"}'
    assert alert.status == "firing"
    assert sorted(loaded.transcripts) == ["bad-over-steps", "bad-wrong-cause", "good"]
    assert loaded.transcripts["bad-wrong-cause"].expected_reason == "wrong_cause"


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("alerts.yaml", "alerts: []\n", "alerts.yaml: alerts"),
        ("alerts.yaml", "alerts: [\n", "alerts.yaml: not valid YAML"),
        ("expect.yaml", "outcome: propose\n", "needs at least one entry in remediations"),
        ("expect.yaml", "- a list\n", "expect.yaml: expected a mapping at the top level"),
        ("scenario.yaml", "name: other\ndeployments: []\n", "not the directory's"),
        (
            "transcripts/bad-x.yaml",
            "expect: fail\nreplies: [{stop_reason: end_turn, content: [{type: text, text: hi}]}]\n",
            "bad-x.yaml: .*expect: fail needs fails_because",
        ),
        (
            "transcripts/bad-x.yaml",
            "expect: fail\nfails_because: bad_luck\nreplies: []\n",
            "bad-x.yaml: fails_because",
        ),
    ],
)
def test_a_bad_file_is_named(scenario: Path, file: str, text: str, message: str) -> None:
    (scenario / file).write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as caught:
        load_scenario_dir(scenario)
    assert str(scenario) in str(caught.value)


def test_a_missing_file_is_named(scenario: Path) -> None:
    (scenario / "alerts.yaml").unlink()
    with pytest.raises(ConfigError, match=r"alerts\.yaml: cannot read"):
        load_scenario_dir(scenario)


def test_discover_filters_by_glob_and_says_when_nothing_matches(scenario: Path) -> None:
    assert [s.name for s in discover(scenario.parent, "bad-*")] == ["bad-deploy-errors"]
    with pytest.raises(ConfigError, match="no scenario matches 'db-\\*'"):
        discover(scenario.parent, "db-*")


def test_directory_names_are_lowercase_with_dashes(tmp_path: Path) -> None:
    odd = tmp_path / "Bad_Name"
    shutil.copytree(FIRST, odd)
    world = yaml.safe_load((odd / "scenario.yaml").read_text())
    (odd / "scenario.yaml").write_text(yaml.safe_dump({**world, "name": "Bad_Name"}))
    with pytest.raises(ConfigError, match="lowercase-with-dashes"):
        load_scenario_dir(odd)
