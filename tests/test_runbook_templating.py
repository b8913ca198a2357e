"""Label values templated into PromQL/LogQL by runbooks are escaped for where they land:
a hostile label stays inside its string literal, so the query keeps its shape; text for
people (findings, summaries, targets) is rendered as it is."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.runbook import RunbookPlanner, load_runbooks
from bot.steps import RunTools
from bot.templating import UnsafeValue, render
from tests.factories import run
from tools.alertmanager import ALERTMANAGER
from tools.kubernetes import KUBERNETES
from tools.logs import LOGS
from tools.prometheus import PROMETHEUS
from tools.sandbox import RunningSandbox
from tools.toolset import ToolContext, index_tools

pytest_plugins = ("tests.sandbox_fixtures",)

HOSTILE = 'x"} or vector(1) or {a="'
TOOLS = index_tools((PROMETHEUS, ALERTMANAGER, KUBERNETES, LOGS))


def skeleton(query: str) -> str:
    """The query with the contents of every string literal removed (its structure)."""
    out, quote, backslash = [], None, False
    for char in query:
        if quote is None:
            out.append(char)
            if char in "\"'`":
                quote = char
        elif backslash:
            backslash = False
        elif char == "\\" and quote != "`":
            backslash = True
        elif char == quote:
            quote = None
            out.append(char)
    assert quote is None, f"unterminated string in {query!r}"
    return "".join(out)


def literals(query: str) -> list[str]:
    """The values of the double-quoted string literals in `query`, unescaped."""
    found, start, backslash = [], None, False
    for i, char in enumerate(query):
        if start is None:
            if char == '"':
                start = i
        elif backslash:
            backslash = False
        elif char == "\\":
            backslash = True
        elif char == '"':
            found.append(json.loads(query[start : i + 1]))
            start = None
    return found


def labels(**values: str) -> dict[str, Any]:
    return {"labels": values}


SELECTOR = 'up{namespace="{{ labels.namespace }}",service="{{ labels.service }}"}'


@pytest.mark.parametrize(
    "value",
    [HOSTILE, 'a\\"} or up', "line\nbreak", "back\\slash", "tab\there", "plain-name_1.2"],
)
def test_a_value_inside_a_string_stays_inside_it(value: str) -> None:
    rendered = render(SELECTOR, labels(namespace="shop", service=value), escape=True)

    assert isinstance(rendered, str)
    assert skeleton(rendered) == skeleton('up{namespace="shop",service="checkout"}')
    assert literals(rendered) == ["shop", value]


def test_the_hostile_label_is_escaped_as_promql_reads_it() -> None:
    rendered = render(SELECTOR, labels(namespace="shop", service=HOSTILE), escape=True)

    assert rendered == 'up{namespace="shop",service="x\\"} or vector(1) or {a=\\""}'


def test_after_a_regex_operator_the_value_matches_only_itself() -> None:
    query = (
        'max(mem{pod=~"{{ labels.service }}-.*"}) + count({app="{{ labels.service }}"}'
        ' |~ "{{ labels.service }}")'
    )
    rendered = render(query, labels(service='check.out"|.*'), escape=True)

    assert rendered == (
        'max(mem{pod=~"check\\\\.out\\"\\\\|\\\\.\\\\*-.*"}) + '
        'count({app="check.out\\"|.*"} |~ "check\\\\.out\\"\\\\|\\\\.\\\\*")'
    )


def test_outside_quotes_only_plain_words_are_placed() -> None:
    window = "rate(x[{{ labels.window }}])"
    assert render(window, labels(window="5m"), escape=True) == "rate(x[5m])"
    with pytest.raises(UnsafeValue, match="cannot go outside a quoted string"):
        render(window, labels(window="5m]) or vector(1"), escape=True)
    with pytest.raises(UnsafeValue, match="raw string"):
        render("up{a=`{{ labels.a }}`}", labels(a="`} or up"), escape=True)


def test_whole_templates_and_text_for_people_are_left_as_they_are() -> None:
    context = labels(service=HOSTILE) | {"steps": {"h": {"data": [{"revision": 3}]}}}

    assert render("{{ labels.service }}", context, escape=True) == HOSTILE
    assert render("{{ steps.h.data.0.revision }}", context, escape=True) == 3
    assert render("The 5xx ratio of {{ labels.service }} is high", context) == (
        f"The 5xx ratio of {HOSTILE} is high"
    )


async def test_a_hostile_service_label_reaches_prometheus_escaped(
    sandbox: RunningSandbox, tool_context: ToolContext
) -> None:
    planner = RunbookPlanner(load_runbooks(), TOOLS)
    hostile, benign = run(service=HOSTILE), run(service="checkout")

    reply = await planner.next_turn(hostile, [])
    assert isinstance(reply.turn, RunTools)
    calls = {c.id: c for c in reply.turn.calls}
    for call in calls.values():
        if call.name.startswith("prometheus_"):
            tool = TOOLS[call.name]
            result = await tool.call(tool_context, tool.validate_input(call.input))
            assert result.status in ("ok", "no_data"), result.error

    benign_reply = await planner.next_turn(benign, [])
    assert isinstance(benign_reply.turn, RunTools)
    benign_calls = {c.id: c for c in benign_reply.turn.calls}
    received = sandbox.requests.promql
    assert len(received) == 2  # the ratio now and its trend
    for query in received:
        assert 'service="x\\"} or vector(1) or {a=\\""' in query
        assert skeleton(query) == skeleton(str(benign_calls["rb_error_ratio"].input["query"]))
        assert HOSTILE in literals(query)
    logql = str(calls["rb_error_logs"].input["query"])
    assert skeleton(logql) == skeleton(str(benign_calls["rb_error_logs"].input["query"]))
    assert logql.startswith('{namespace="shop", app="x\\"} or vector(1) or {a=\\""}')
    # A whole-value argument is the label itself, for the tool's own validation to judge.
    assert calls["rb_deployment"].input["name"] == HOSTILE
