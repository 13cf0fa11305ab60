"""Schedules as the DataHub client writes them: ``every <N><m|h|d|w>``.

A dataset whose newest revision has a schedule gets a new revision, its spec the same
and its trigger ``scheduled``, each time the schedule comes due (see
``Registry.fire_schedules``); specstore runs schedules itself, the same on both engines.
"""

from __future__ import annotations

import re

SCHEDULE = re.compile(r"every ([1-9][0-9]{0,5})([mhdw])")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The longest schedule: ten years (what the pattern allows runs past the calendar).
MAX_SCHEDULE_SECONDS = 520 * UNIT_SECONDS["w"]


def schedule_seconds(schedule: object) -> int | None:
    """The interval ``schedule`` says, in seconds; None when it says none (or is not one)."""
    found = SCHEDULE.fullmatch(schedule) if isinstance(schedule, str) else None
    return int(found[1]) * UNIT_SECONDS[found[2]] if found else None


def describe(seconds: float) -> str:
    """``seconds`` the way a schedule says it, in the largest unit that divides it."""
    for unit, size in sorted(UNIT_SECONDS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"every {int(seconds // size)}{unit}"
    return f"every {seconds:g} s"
