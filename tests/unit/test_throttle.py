"""The limiters' in-process counters: exact, and swept without a thread per hit."""

from __future__ import annotations

import threading
import time

import pytest

from specstore.errors import TooManyRequests
from specstore.throttle import SpecBytesThrottle, SweptMemoryStorage, UploadThrottle, storage


def test_a_memory_uri_is_counted_in_this_process_by_the_swept_storage():
    assert isinstance(storage("memory://"), SweptMemoryStorage)


def test_bytes_refused_past_the_rate_are_not_counted_and_the_window_moves_on():
    throttle = SpecBytesThrottle("2KiB/second")
    throttle.hit("alice", 2048)
    with pytest.raises(TooManyRequests) as refused:
        throttle.hit("alice", 1)
    assert refused.value.messages == [
        "too many bytes of specs: at most 2KiB per second for one owner (SPEC_BYTES_LIMIT), "
        "try again later"
    ]
    throttle.hit("bob", 2048)  # each owner has a window of their own
    time.sleep(2.1)  # the window and the one before it are over
    throttle.hit("alice", 2048)


def test_hits_start_no_thread_each_and_expired_windows_are_still_swept(monkeypatch):
    monkeypatch.setattr(SweptMemoryStorage, "SWEEP_SECONDS", 0.5)
    started = []
    timer = threading.Timer

    class CountedTimer(timer):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Timer", CountedTimer)
    throttle = UploadThrottle("1000/second")
    for number in range(50):
        throttle.hit(f"user-{number}")
        time.sleep(0.02)  # longer than limits' own 10 ms timer
    # One sweep per SWEEP_SECONDS at most (limits' own storage starts one per hit here).
    assert 1 <= len(started) <= 4
    time.sleep(1.2)  # every window of those users is over
    throttle.hit("carol")  # a hit after SWEEP_SECONDS sweeps
    started[-1].join(timeout=5)
    windows = throttle.storage.events
    assert not any(entries for key, entries in windows.items() if "user-" in key), windows
