"""The DPP dispatcher on its own: when the machine booted."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from specstore.pipelines.dpp.dispatcher import machine_booted


def test_the_machines_boot_is_when_it_last_started_or_now_where_the_system_does_not_say(
    monkeypatch,
):
    now = dt.datetime.now(dt.UTC)
    booted = machine_booted()
    up = Path("/proc/uptime").read_text().split()[0]
    assert abs((now - booted).total_seconds() - float(up)) < 5
    monkeypatch.delattr(time, "CLOCK_BOOTTIME")
    assert abs((machine_booted() - dt.datetime.now(dt.UTC)).total_seconds()) < 1
