"""How much one user may upload: uploads counted per user (the token's ``userid``), and
bytes of specs stored per owner, in the storage ``limits`` keeps its windows in (this
process's memory by default; Redis or memcached to count across workers and machines)."""

from __future__ import annotations

import math
import re
import threading
import time

from limits import RateLimitItem, parse, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from .errors import TooManyRequests

# Byte rates are counted in KiB: ``limits`` counts in integers, and a window's count
# must not grow past what its storage keeps.
_UNITS = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_BYTE_RATE = re.compile(r"(?P<amount>[0-9]+)\s*(?P<unit>B|KiB|MiB|GiB)\s*(?P<per>/.+)", re.I)


def parse_byte_rates(text: str) -> list[tuple[int, RateLimitItem]]:
    """``64MiB/hour;256MiB/day`` as (bytes, the same rate in KiB); ValueError otherwise."""
    rates = []
    for part in text.split(";"):
        found = _BYTE_RATE.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"{part.strip()!r} is not a rate of bytes such as 64MiB/hour")
        amount = int(found["amount"]) * _UNITS[found["unit"].lower()]
        if amount < 1024:
            raise ValueError(f"{part.strip()!r}: at least 1KiB")
        rates.append((amount, parse(f"{amount // 1024}{found['per']}")))
    return rates


def _described(amount: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        size = _UNITS[unit.lower()]
        if amount % size == 0:
            return f"{amount // size}{unit}"
    return f"{amount}B"


class SweptMemoryStorage(MemoryStorage):
    """``limits``' in-process storage, its expired windows swept at most once every
    ``SWEEP_SECONDS``. ``limits``' own starts a timer thread 10 ms after a hit whenever the
    last one has ended: under a steady load, a thread every other upload. What is read
    stays exact: a counter past its expiry reads as expired (``MemoryStorage.get``), and a
    moving window counts only the entries inside it; the sweep only frees memory."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        self._swept_at = time.monotonic()
        super().__init__()

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < self.SWEEP_SECONDS or self.timer.is_alive():
            return
        self._swept_at = now
        self.timer = threading.Timer(0.0, self._MemoryStorage__expire_events)
        self.timer.daemon = True
        self.timer.start()


def storage(uri: str) -> Storage:
    """The counters' storage that ``uri`` names (``memory://``: this process's)."""
    return SweptMemoryStorage() if uri == "memory://" else storage_from_string(uri)


class _Limiter:
    strategy: type = MovingWindowRateLimiter

    def __init__(self, storage_uri: str) -> None:
        self.storage = storage(storage_uri)
        self._limiter = self.strategy(self.storage)

    def retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset - time.time()))


class UploadThrottle(_Limiter):
    def __init__(self, rates: str, storage_uri: str = "memory://") -> None:
        super().__init__(storage_uri)
        self.items = parse_many(rates)

    def hit(self, userid: str) -> None:
        """Count one upload of ``userid``; :class:`TooManyRequests` past any of the rates."""
        for item in self.items:
            if not self._limiter.hit(item, "upload", userid):
                raise TooManyRequests(
                    f"too many uploads: at most {item} for one user, try again later",
                    retry_after=self.retry_after(item, "upload", userid),
                )


class SpecBytesThrottle(_Limiter):
    """Bytes of specs one owner may have stored, per window (``SPEC_BYTES_LIMIT``).

    Counted in two counters per window (the window's and the one before it, weighed by
    how much of it is still in the window), not one entry per KiB: a moving window keeps
    every unit counted, which for a quota of megabytes is millions of entries to keep in
    order and expire."""

    strategy = SlidingWindowCounterRateLimiter

    def __init__(self, rates: str, storage_uri: str = "memory://") -> None:
        super().__init__(storage_uri)
        self.rates = parse_byte_rates(rates)

    def hit(self, owner_id: str, size: int) -> None:
        """Count ``size`` bytes of ``owner_id``'s; :class:`TooManyRequests` past any rate,
        nothing counted then."""
        cost = max(1, math.ceil(size / 1024))
        for amount, item in self.rates:
            if not self._limiter.test(item, "spec-bytes", owner_id, cost=cost):
                raise TooManyRequests(
                    f"too many bytes of specs: at most {_described(amount)} per "
                    f"{item.GRANULARITY.name} for one owner (SPEC_BYTES_LIMIT), try again later",
                    retry_after=self.retry_after(item, "spec-bytes", owner_id),
                )
        for _, item in self.rates:
            self._limiter.hit(item, "spec-bytes", owner_id, cost=cost)
