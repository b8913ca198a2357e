"""`serve`'s collector set-up: the youngest generation is collected less often."""

from __future__ import annotations

import gc
from typing import Any

from bot.heap import YOUNG_THRESHOLD, collect_young_less_often


def test_thousands_of_live_allocations_start_no_young_collection() -> None:
    default = gc.get_threshold()
    young: list[int] = []

    def count_young(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 0:
            young.append(1)

    try:
        assert collect_young_less_often() == (YOUNG_THRESHOLD, *default[1:])
        gc.collect()
        gc.callbacks.append(count_young)
        alive = [[n] for n in range(YOUNG_THRESHOLD // 2)]  # 7 collections at Python's 700
        gc.callbacks.remove(count_young)
    finally:
        gc.set_threshold(*default)
    assert len(alive) == YOUNG_THRESHOLD // 2
    assert young == []
