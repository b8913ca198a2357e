"""Charts of a run's signal: the PNG (decoded, measured, its lines found by colour), the
sparkline, which query a run's signal is, and the sandbox's series of the demo scenario
(rising at the bad deploy, dropping after the rollback) as the charts read it."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from bot.charts import (
    HEIGHT_PX,
    WIDTH_PX,
    ChildRenderer,
    Line,
    Mark,
    minute_ticks,
    render_png,
    sparkline,
)
from bot.demo import demo_alert
from bot.models import Check, Proposal, Run, utcnow
from bot.signals import lines_of, signal_of, split_comparison
from tests.processes import eventually
from tools.actions import ROLLBACK, ActionContext, RollbackInput
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

ERROR_RATIO = (
    'sum(rate(http_requests_total{namespace="shop",service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{namespace="shop",service="checkout"}[5m]))'
)
BLUE, RED = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)  # matplotlib's first colour, tab:red


def _colours(png: bytes) -> set[tuple[int, int, int]]:
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (WIDTH_PX, HEIGHT_PX))
    return {colour for _, colour in image.convert("RGB").getcolors(WIDTH_PX * HEIGHT_PX) or []}


def _series(now: float) -> Line:
    values = [0.002] * 50 + [0.12] * 8 + [0.002] * 3
    return Line(
        label="service=checkout",
        points=tuple((now - 1800 + 30 * i, v) for i, v in enumerate(values)),
    )


def test_the_png_decodes_to_its_size_with_the_series_the_threshold_and_the_marks() -> None:
    now = time.time()
    approved = datetime.fromtimestamp(now - 90, UTC)
    png = render_png(
        [_series(now)],
        title="The signal that fired",
        marks=[Mark(at=approved, label="kubernetes.rollback approved by U123 14:02")],
        threshold=0.05,
    )
    colours = _colours(png)
    assert BLUE in colours and RED in colours

    bare = _colours(render_png([_series(now)], title="no threshold"))
    assert BLUE in bare and RED not in bare


def test_ticks_fall_on_round_minutes_and_stay_few() -> None:
    start = datetime(2026, 12, 1, 13, 47, 12, tzinfo=UTC).timestamp()
    ticks = minute_ticks(start, start + 31 * 60)
    shown = [f"{datetime.fromtimestamp(t, UTC):%H:%M}" for t in ticks]
    assert shown == ["13:50", "13:55", "14:00", "14:05", "14:10", "14:15"]
    day = minute_ticks(start, start + 20 * 3600)
    assert len(day) <= 8 and all(t % 3600 == 0 for t in day)


def test_sparkline_spans_the_bars_and_fits_its_width() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3, 3, 3]) == "▁▁▁"
    assert sparkline([0, float("nan"), 7]) == "▁█"
    assert sparkline([]) == ""
    long = sparkline([0.0] * 100 + [1.0] * 20, width=30)
    assert len(long) == 30 and long.startswith("▁" * 20) and long.endswith("█" * 5)


def test_the_signal_is_the_verify_check_else_the_alert_expression() -> None:
    assert split_comparison(f"{ERROR_RATIO} > 0.05") == (ERROR_RATIO, 0.05)
    assert split_comparison("up == bool 0") == ("up", 0.0)
    assert split_comparison("a unless b > 1") == ("a unless b > 1", None)
    assert split_comparison("rate(x[5m])") == ("rate(x[5m])", None)

    run = Run(alert=demo_alert("http://prometheus"), deadline=utcnow() + timedelta(minutes=5))
    from_alert = signal_of(run)
    assert from_alert is not None
    assert (from_alert.query, from_alert.threshold) == (ERROR_RATIO, 0.05)

    verify = Check(query="sum(up{job='checkout'})", op="<", threshold=2)
    proposal = Proposal(
        action="kubernetes.rollback",
        target="deployment shop/checkout",
        arguments={},
        rationale="r",
        risk="low",
        expected_effect="e",
        verify=verify,
    )
    checked = signal_of(run.model_copy(update={"proposal": proposal}))
    assert checked is not None and (checked.query, checked.threshold) == (verify.query, 2)


async def test_the_sandbox_series_rises_at_the_deploy_and_drops_after_the_rollback(
    sandbox: RunningSandbox, action_context: ActionContext
) -> None:
    run = Run(alert=demo_alert(sandbox.url), deadline=utcnow() + timedelta(minutes=5))
    [before] = await lines_of(run, action_context)
    values = [v for _, v in before.points]
    assert values[0] == 0.002 and max(values) == values[-1] == 0.12
    assert sparkline(values).startswith("▁▁▁") and sparkline(values).endswith("█")
    assert before.label == "namespace=shop, service=checkout"
    # An alert that had fired for days before the run: the window stays near the run.
    days_ago = run.alert.model_copy(update={"starts_at": utcnow() - timedelta(days=9)})
    [stale] = await lines_of(run.model_copy(update={"alert": days_ago}), action_context)
    (first, _), (second, _) = stale.points[:2]
    assert second - first <= 60 and stale.points[-1][0] - first <= 61 * 60
    assert max(v for _, v in stale.points) == 0.12

    rollback = RollbackInput(namespace="shop", deployment="checkout", to_revision=1)
    await ROLLBACK.execute(action_context, rollback, "prop-chart")
    [after] = await lines_of(run, action_context)
    assert after.points[-1][1] == 0.002 and max(v for _, v in after.points) == 0.12
    assert after.points[-1][0] >= time.time() - 5  # the window ends now: the drop shows


async def test_the_child_renderer_draws_apart_and_starts_again_after_its_child_died() -> None:
    now = time.time()
    before = set(multiprocessing.active_children())
    renderer = ChildRenderer()
    try:
        png = await renderer.render([_series(now)], title="apart", threshold=0.05)
        assert {BLUE, RED} <= _colours(png)
        [child] = set(multiprocessing.active_children()) - before  # drawn in a process
        assert child.pid != os.getpid()
        child.kill()  # e.g. the OOM killer
        child.join(10)
        with pytest.raises(BrokenProcessPool):
            await renderer.render([_series(now)], title="died")
        again = await renderer.render([_series(now)], title="again")
        assert {BLUE} <= _colours(again)
    finally:
        renderer.close()


# A process that, as `serve` does, handles SIGTERM on its loop; it draws one chart, writes
# its renderer's child's pid to the file it is given, and waits to be killed (holding its
# renderer: a pool collected as garbage would stop its child).
_DRAWS_THEN_WAITS = """
import asyncio, multiprocessing, pathlib, signal, sys
from bot.charts import ChildRenderer, Line

async def main():
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, print)
    renderer = ChildRenderer()
    await renderer.render([Line(label="x", points=((0.0, 1.0), (60.0, 2.0)))], title="t")
    [child] = multiprocessing.active_children()
    pathlib.Path(sys.argv[1]).write_text(str(child.pid))
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _exited(pid: int) -> bool | None:
    """True once `pid` is gone (or a zombie: it exited, unreaped by its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return True if stat.read().rsplit(")", 1)[1].split()[0] == "Z" else None
    except FileNotFoundError:
        return True


async def test_the_renderers_child_exits_when_the_bot_is_killed(tmp_path: Path) -> None:
    # SIGKILL leaves no shutdown to stop the child: it must see its parent go by itself,
    # not stay orphaned holding its memory (a matplotlib process, ~100 MB).
    written = tmp_path / "child.pid"
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _DRAWS_THEN_WAITS, str(written), stdin=asyncio.subprocess.DEVNULL
    )

    async def child_pid() -> int | None:
        return int(written.read_text()) if written.exists() and written.read_text() else None

    child = await eventually(child_pid, within=60)
    assert _exited(child) is None
    bot.kill()
    await bot.wait()

    async def gone() -> bool | None:
        return _exited(child)

    try:
        assert await eventually(gone, within=10)
    finally:
        if not _exited(child):
            os.kill(child, signal.SIGKILL)  # not left behind by a failure
