"""What the API does, without the HTTP: the views parse a request, call one method here,
and serialize what it returns.

:class:`SourceService` receives its collaborators (the store's parts, the token
verifier, the planner, the engine) instead of reaching for globals, so it is tested
without Flask as easily as through it. It owns an upload's unit of work: the spec
checked and planned once, then stored and handed to the engine in one transaction, the
store never calling the engine itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .auth import TokenVerifier
from .errors import BadRequest, Forbidden, InvalidSpec, NotFound
from .events import PipelineEvent
from .hooks import HookCredentials
from .pipelines.dpp import DppDashboard
from .pipelines.engine import Engine
from .pipelines.layout import PlanError
from .pipelines.planner import Planner
from .pipelines.reports import Reports
from .publications import Publications
from .store.ledger import Ledger
from .store.records import (
    DatasetPage,
    DatasetRevision,
    EventOutcome,
    Handover,
    MissingRevision,
    RevisionRef,
    RevisionSummary,
)
from .store.revisions import Revisions
from .throttle import SpecBytesThrottle, UploadThrottle
from .validation import SchemaValidator, normalised, parse_document
from .visibility import Viewer, is_segment, may_see

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
# The largest number a caller may send (revisions, offsets): the databases' integer.
MAX_INTEGER = 2**31 - 1
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0

    @classmethod
    def parse(cls, limit: str | None, offset: str | None) -> Page:
        try:
            page = cls(
                limit=DEFAULT_PAGE_SIZE if limit is None else int(limit),
                offset=0 if offset is None else int(offset),
            )
        except ValueError:
            raise BadRequest("limit and offset must be integers") from None
        if not 1 <= page.limit <= MAX_PAGE_SIZE:
            raise BadRequest(f"limit: must be between 1 and {MAX_PAGE_SIZE}")
        if not 0 <= page.offset <= MAX_INTEGER:
            raise BadRequest(f"offset: must be between 0 and {MAX_INTEGER}")
        return page


class SourceService:
    def __init__(
        self,
        revisions: Revisions,
        ledger: Ledger,
        verifier: TokenVerifier,
        spec_validator: SchemaValidator,
        hooks: HookCredentials,
        planner: Planner,
        reports: Reports,
        engine: Engine | None = None,
        dashboard: DppDashboard | None = None,
        throttle: UploadThrottle | None = None,
        spec_bytes: SpecBytesThrottle | None = None,
        schedules_per_owner: int = 0,
        publications: Publications | None = None,
    ) -> None:
        self.revisions = revisions
        self.publications = publications
        self.ledger = ledger
        self.verifier = verifier
        self.spec_validator = spec_validator
        self.hooks = hooks
        self.planner = planner
        self.reports = reports
        self.engine = engine
        self.dashboard = dashboard
        self.throttle = throttle
        self.spec_bytes = spec_bytes
        self.schedules_per_owner = schedules_per_owner

    # -- writing -------------------------------------------------------------------

    def upload(self, token: str | None, body: Callable[[], bytes], media_type: str) -> RevisionRef:
        """Verify the uploader, then parse, authorize, check, plan and store the spec, and
        hand it to the engine.

        ``body`` reads the request's body; it is called only once the token verified,
        so anonymous requests cost no reading or parsing.
        """
        identity = self.verifier.verify(token)
        if self.throttle is not None:
            self.throttle.hit(identity.userid)
        data = body()
        spec = parse_document(data, media_type)
        if not isinstance(spec, dict):
            raise BadRequest("the spec must be an object")
        meta = normalised(spec).get("meta")
        owner_id = meta.get("ownerid") if isinstance(meta, dict) else None
        if isinstance(owner_id, str) and owner_id:
            identity.require_user(owner_id)
        self.spec_validator.check(spec)
        try:
            checked = self.planner.check(spec)
        except PlanError as exc:
            raise InvalidSpec(*exc.messages) from None
        if self.spec_bytes is not None:
            self.spec_bytes.hit(spec["meta"]["ownerid"], len(data))
        engine, handover = self.engine, None
        try:
            with self.revisions.upload(spec, self.schedules_per_owner) as upload:
                if engine is not None:
                    handover = engine.prepare(upload.ref, spec, checked)
                upload.record(handover)
        except BaseException:
            _undo(handover)
            raise
        ref = upload.stored
        assert ref is not None  # stored once the block ended
        if engine is not None:
            try:
                engine.dispatch(ref, spec, handover)
            except Exception:
                # Stored is stored: the engine's sweep takes it over later.
                log.exception("handing %s to the engine failed", ref.flow_id)
        return ref

    def update(
        self,
        token: str | None,
        parse: Callable[[], Any],
        dataset: str | None = None,
        revision: int | None = None,
    ) -> EventOutcome:
        """Record one engine event, if it carries the credential of its revision (checked
        before its body is parsed: ``dataset`` and ``revision`` from the hook URL)."""
        owner_id, slash, name = (dataset or "").partition("/")
        named = (owner_id, name) if slash and owner_id and name else (None, None)
        self.hooks.check(token, *named, revision)
        event = PipelineEvent.from_payload(parse(), revision)
        pipeline = event.pipeline
        if named[0] is not None and (
            (pipeline.owner_id, pipeline.dataset) != named or event.revision != revision
        ):
            raise Forbidden(
                f"the hook token is for revision {revision} of {dataset}, not for this event's "
                f"{pipeline.owner_id}/{pipeline.dataset} revision {event.revision}"
            )
        return self.ledger.apply_event(self.reports.event(event))

    # -- reading -------------------------------------------------------------------

    def revision(
        self,
        owner_id: str,
        dataset: str,
        viewer: Viewer,
        which: str | int = "latest",
        view: str = "page",
    ) -> DatasetRevision:
        """A revision the viewer may see (see :mod:`specstore.visibility`), read for
        ``view`` (see ``Revisions.revision``). A token that does not verify is 401 first,
        whatever the dataset; a name no dataset can have is read nowhere."""
        userid = viewer.userid
        if isinstance(which, int) and not 1 <= which <= MAX_INTEGER:
            raise BadRequest(f"revision: must be between 1 and {MAX_INTEGER}")
        missing = NotFound(f"no dataset {owner_id}/{dataset}")
        if not (is_segment(owner_id) and is_segment(dataset)):
            raise missing
        try:
            found = self.revisions.revision(owner_id, dataset, which, view)
        except MissingRevision as exc:
            if may_see(exc.dataset.findability, owner_id, userid):
                raise NotFound(f"no revision {which} of {owner_id}/{dataset}") from None
            raise missing from None
        except NotFound:
            raise missing from None
        if not may_see(found.dataset.findability, owner_id, userid):
            raise missing
        if not may_see(found.revision.findability, owner_id, userid):
            if which == "latest":
                raise missing
            raise NotFound(f"no revision {which} of {owner_id}/{dataset}")
        return found

    def shown_pipeline(self, found: DatasetRevision) -> str | None:
        """The revision's main pipeline as users are shown it, as JSON text (None: not
        planned yet): stored at its handover, or, for a revision handed over before that
        was stored, cleaned now from the pipeline as planned."""
        revision = found.revision
        if revision.shown_pipeline_text is not None:
            return revision.shown_pipeline_text
        planned = revision.planned_pipeline_text
        if planned is None or planned == "null":
            return None
        owner_id, dataset = found.dataset.owner_id, found.dataset.name
        return json.dumps(self.reports.shown(json.loads(planned), owner_id, dataset))

    def engine_record(self, found: DatasetRevision) -> dict[str, Any] | None:
        """The engine's own record of the revision's run (DPP's dashboard), if it has one,
        cleaned as events are (no tracebacks, no server paths, no secrets)."""
        if self.dashboard is None:
            return None
        owner_id, dataset = found.dataset.owner_id, found.dataset.name
        record = self.dashboard.record(f"{owner_id}/{dataset}", found.revision.revision)
        if record is None:
            return None
        cleaned = {
            key: self.reports.value(value, owner_id, dataset) for key, value in record.items()
        }
        if "error_log" in record:
            cleaned["error_log"] = self.reports.errors(record["error_log"] or [], owner_id, dataset)
        if isinstance(record.get("reason"), str):
            lines = self.reports.lines(record["reason"].splitlines(), owner_id, dataset)
            cleaned["reason"] = "\n".join(lines)
        return cleaned

    def published(self, found: DatasetRevision) -> dict[str, Any]:
        """What the revision published (``datapackage_url``, ``outputs``, ``validation``),
        with URLs its viewer can read (see :class:`Publications`)."""
        if self.publications is None:
            return {}
        return self.publications.shown(found.revision.stats, found.dataset.findability)

    def list_datasets(self, owner_id: str | None, viewer: Viewer, page: Page) -> DatasetPage:
        """The owner's datasets (everyone's published ones when ``owner_id`` is None);
        private and unlisted ones only for the owner."""
        userid = viewer.userid  # a token that does not verify: 401, whoever's listing
        if owner_id is not None and not is_segment(owner_id):
            return DatasetPage([], 0)  # no owner has such an id: nothing to read
        include_hidden = owner_id is not None and userid == owner_id
        return self.revisions.list_datasets(owner_id, include_hidden, page.limit, page.offset)

    def visible_revisions(self, found: DatasetRevision, viewer: Viewer) -> list[RevisionSummary]:
        """The dataset's revisions, newest first, that the viewer may see: the rule of
        :meth:`revision`, so that a page listing them shows what the API answers."""
        owner_id, dataset = found.dataset.owner_id, found.dataset.name
        userid = viewer.userid
        return [
            revision
            for revision in self.revisions.revisions(owner_id, dataset)
            if may_see(revision.findability, owner_id, userid)
        ]


def _undo(handover: Handover | None) -> None:
    """Take back what the engine wrote outside the database for a revision that was not
    stored after all."""
    if handover is not None and handover.undo is not None:
        handover.undo()
