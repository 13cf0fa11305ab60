"""The store: what specstore keeps in its database, and the one way to it.

Each module is one kind of caller or one mechanism:

* :mod:`.revisions`: what the API asks (an upload's unit of work, reads);
* :mod:`.ledger`: what the engines ask (handovers, events, ends, schedules, orphans);
* :mod:`.leases`: what the embedded runner asks (its leases);
* :mod:`.baselines`: what a scheduled revision compares itself with;
* :mod:`.announcements`: what the announcer asks (the outbox of revisions' ends);
* :mod:`.installation`: values an installation makes once;
* :mod:`.records`: what they are given and answer with;
* :mod:`.statements`: every statement, prebuilt; :mod:`.sql`: how they run;
* :mod:`.database`: engines, transactions, migrations; :mod:`.models`: the tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from .announcements import Announcements
from .baselines import Baselines
from .database import Database
from .installation import InstallationValues
from .leases import Leases
from .ledger import Ledger
from .records import utcnow
from .revisions import Revisions


@dataclass(frozen=True)
class Store:
    database: Database
    revisions: Revisions
    ledger: Ledger
    leases: Leases
    baselines: Baselines
    announcements: Announcements
    installation: InstallationValues

    @classmethod
    def open(
        cls, url: str, fast_path: bool = True, clock: Callable[[], dt.datetime] = utcnow
    ) -> Store:
        """The store of the database at ``url`` (nothing is connected yet)."""
        database = Database(url, fast_path=fast_path)
        return cls.on(database, clock)

    @classmethod
    def on(cls, database: Database, clock: Callable[[], dt.datetime] = utcnow) -> Store:
        return cls(
            database,
            Revisions(database, clock),
            Ledger(database, clock),
            Leases(database, clock),
            Baselines(database),
            Announcements(database, clock),
            InstallationValues(database),
        )
