"""How many uploads one user may make: counted per user (the token's ``userid``), in the
storage ``limits`` keeps its windows in (this process's memory by default; Redis or
memcached to count across workers and machines)."""

from __future__ import annotations

import math
import time

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import TooManyRequests


class UploadThrottle:
    def __init__(self, rates: str, storage_uri: str = "memory://") -> None:
        self.items = parse_many(rates)
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, userid: str) -> None:
        """Count one upload of ``userid``; :class:`TooManyRequests` past any of the rates."""
        for item in self.items:
            if not self._limiter.hit(item, "upload", userid):
                reset = self._limiter.get_window_stats(item, "upload", userid).reset_time
                raise TooManyRequests(
                    f"too many uploads: at most {item} for one user, try again later",
                    retry_after=max(1, math.ceil(reset - time.time())),
                )
