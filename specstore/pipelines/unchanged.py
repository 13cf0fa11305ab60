"""Scheduled revisions whose sources did not change: ended, not run.

A schedule re-runs a dataset to pick up what its sources publish; when they publish
nothing new, running it again would write the same outputs. So before an engine runs a
scheduled revision (the embedded runner in its worker, DPP's dispatcher in its planner,
never in a request or the scheduler), it is compared with its dataset's last run
(:class:`~specstore.store.baselines.Baseline`), if that run succeeded:

1. the same inputs: the spec and the input data package's descriptor, as planned
   (the plan's :data:`~.planner.INPUTS_KEY`), which names the same sources;
2. every source the same: each is asked with a conditional request carrying the
   ``ETag`` and ``Last-Modified`` that run recorded, under the one fetch policy
   (``datapackage_pipelines_specstore.sources``); a 304, or the same bytes again (by
   SHA-256), is the same.

When both hold, the revision ends SUCCEEDED at once, its log saying "unchanged since
revision N" (N: the revision whose outputs are current), its statistics those of N's
run (so status and info point at N's publication) with ``unchanged_since: N``; nothing
is written. When anything differs, or a source cannot be asked, it runs as any revision
does. An upload (a person pushing) always runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from datapackage_pipelines_specstore.fetch import FetchError, Limits
from datapackage_pipelines_specstore.sources import source_stat, unchanged

from ..events import SUCCEEDED
from ..metrics import UNCHANGED
from ..store.baselines import Baseline, Baselines
from ..store.ledger import Ledger
from ..store.records import RevisionRef
from .layout import Plan
from .planner import INPUTS_KEY

log = logging.getLogger(__name__)

# The statistic of a revision that ended unchanged: the revision whose outputs it shows.
UNCHANGED_STAT = "unchanged_since"


def sources(plan: Plan) -> list[tuple[str, str]]:
    """Each resource the plan loads from a URL: its name and its URL."""
    return [
        (resource["name"], resource["url"])
        for step in plan.main.get("pipeline") or []
        if step.get("run") == "specstore.load"
        for resource in (step.get("parameters") or {}).get("resources") or []
    ]


class Unchanged:
    def __init__(
        self, baselines: Baselines, ledger: Ledger, limits: Limits, timeout: float | None
    ) -> None:
        self.baselines = baselines
        self.ledger = ledger
        self.limits = limits
        # How long asking every source may take, all told (None: a download's timeout
        # for each).
        self.timeout = timeout

    def settle(self, ref: RevisionRef, plan: Plan) -> bool:
        """End ``ref``, planned as ``plan``, when it is a scheduled revision that would
        change nothing (True); False: it runs."""
        baseline = self.baselines.of(ref)
        if baseline is None:
            return False
        planned = baseline.plan.get(plan.main_id)
        if not isinstance(planned, dict) or planned.get(INPUTS_KEY) != plan.main.get(INPUTS_KEY):
            log.info(
                "%s: its spec or data package changed since revision %d",
                ref.flow_id,
                baseline.revision,
            )
            return False
        loaded = sources(plan)
        if not self._same_sources(ref, baseline, loaded):
            return False
        since = baseline.stats.get(UNCHANGED_STAT) or baseline.revision
        said = f"{len(loaded)} source{'' if len(loaded) == 1 else 's'}"
        line = f"unchanged since revision {since}: every source ({said}) is as it was; nothing ran"
        ended = self.ledger.end(
            ref,
            SUCCEEDED,
            [],
            log=[line],
            stats={**baseline.stats, UNCHANGED_STAT: since},
            plan=plan.pipelines,
        )
        if ended:
            UNCHANGED.inc()
            log.info("%s: %s", ref.flow_id, line)
        return True

    def _same_sources(
        self, ref: RevisionRef, baseline: Baseline, loaded: list[tuple[str, str]]
    ) -> bool:
        timeout = self.timeout or self.limits.timeout * max(len(loaded), 1)
        deadline = time.time() + timeout
        for name, url in loaded:
            recorded: Any = baseline.stats.get(source_stat(name))
            if not isinstance(recorded, dict):
                log.info(
                    "%s: revision %d has no record of %s's source",
                    ref.flow_id,
                    baseline.revision,
                    name,
                )
                return False
            try:
                same = unchanged(url, recorded, self.limits, deadline)
            except FetchError as exc:
                log.info(
                    "%s: resource %s could not be asked whether it changed (%s)",
                    ref.flow_id,
                    name,
                    exc,
                )
                return False
            if not same:
                log.info(
                    "%s: resource %s changed since revision %d",
                    ref.flow_id,
                    name,
                    baseline.revision,
                )
                return False
        return True
