"""What the API does, without the HTTP: the views parse a request, call one
method here, and serialize what it returns.

``SourceService`` receives its collaborators (registry, token verifier, the
schema validator, the hook token) instead of reaching for globals, so it is
tested without Flask as easily as through it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .auth import Identity, TokenVerifier
from .errors import BadRequest, Forbidden, InvalidSpec, NotFound
from .events import PipelineEvent
from .hooks import HookCredentials
from .pipelines.dpp import DppDashboard
from .pipelines.planner import Planner
from .pipelines.reports import Reports
from .registry import (
    PRIVATE,
    PUBLISHED,
    DatasetPage,
    DatasetRevision,
    EventOutcome,
    MissingRevision,
    Registry,
    RevisionRef,
)
from .throttle import SpecBytesThrottle, UploadThrottle
from .validation import SchemaValidator, parse_document

if TYPE_CHECKING:
    from .pipelines.dpp import DppDispatcher
    from .pipelines.runner import EmbeddedRunner

    Engine = DppDispatcher | EmbeddedRunner

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500
# The largest number a caller may send (revisions, offsets): the databases' integer.
MAX_INTEGER = 2**31 - 1
FINDABILITY_ALIASES = ("public", "publish")
DEFAULT_PAGE_SIZE = 50


# What an owner id or a dataset name may be (the spec's schema says the same).
_SEGMENT = re.compile(r"(?!\.{1,2}\Z)[A-Za-z0-9._-]{1,128}")


def is_segment(name: str) -> bool:
    """Whether ``name`` may be an owner id or a dataset name."""
    return _SEGMENT.fullmatch(name) is not None


def _may_see(findability: str | None, owner_id: str, userid: str | None) -> bool:
    """Whether ``userid`` may see what has ``findability`` (None: it does not exist)."""
    return findability is not None and (findability != PRIVATE or userid == owner_id)


class Viewer:
    """Who is asking, found out only when it matters (a private dataset, a listing).

    The token is verified at most once, and only if there is one.
    """

    def __init__(self, verifier: TokenVerifier, token: str | None) -> None:
        self._verifier = verifier
        self._token = token
        self._identity: Identity | None = None

    @property
    def userid(self) -> str | None:
        if self._token is None:
            return None
        if self._identity is None:
            self._identity = self._verifier.verify(self._token)
        return self._identity.userid


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
        registry: Registry,
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
    ) -> None:
        self.registry = registry
        self.verifier = verifier
        self.spec_validator = spec_validator
        self.planner = planner
        self.reports = reports
        self.throttle = throttle
        self.spec_bytes = spec_bytes
        self.schedules_per_owner = schedules_per_owner
        self.engine = engine
        self.dashboard = dashboard
        self.hooks = hooks

    # -- writing -------------------------------------------------------------------

    def upload(self, token: str | None, body: Callable[[], bytes], media_type: str) -> RevisionRef:
        """Verify the uploader, then parse, authorize, validate and store the spec.

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
        meta = spec.get("meta")
        if isinstance(meta, dict) and meta.get("findability") in FINDABILITY_ALIASES:
            # The DataHub client takes these for "published" (push-flow sends them as is).
            meta["findability"] = PUBLISHED
        owner_id = meta.get("ownerid") if isinstance(meta, dict) else None
        if isinstance(owner_id, str) and owner_id:
            identity.require_user(owner_id)
        self.spec_validator.check(spec)
        problems = self.planner.problems(spec)
        if problems:
            raise InvalidSpec(*problems)
        if self.spec_bytes is not None:
            self.spec_bytes.hit(spec["meta"]["ownerid"], len(data))
        engine = self.engine
        ref, handover = self.registry.register_revision(
            spec, engine.prepare if engine is not None else None, self.schedules_per_owner
        )
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
        return self.registry.apply_event(self.reports.event(event))

    # -- reading -------------------------------------------------------------------

    def revision(
        self,
        owner_id: str,
        dataset: str,
        viewer: Viewer,
        which: str | int = "latest",
        view: str = "full",
    ) -> DatasetRevision:
        """A revision the viewer may see (a private one: only its owner); read for ``view``
        (see ``Registry.revision``).

        For whoever may not see it, a hidden revision is a missing one, word for word: a
        dataset whose newest revision is private is ``no dataset`` on every route (its older
        revisions too), an older private revision of a dataset they see is ``no revision``.
        A token that does not verify is 401 first, whatever the dataset.
        """
        userid = viewer.userid
        if isinstance(which, int) and not 1 <= which <= MAX_INTEGER:
            raise BadRequest(f"revision: must be between 1 and {MAX_INTEGER}")
        missing = NotFound(f"no dataset {owner_id}/{dataset}")
        if not (is_segment(owner_id) and is_segment(dataset)):
            raise missing  # no dataset has such a name: nothing to read
        try:
            found = self.registry.revision(owner_id, dataset, which, view)
        except MissingRevision as exc:
            if _may_see(exc.dataset.findability, owner_id, userid):
                raise NotFound(f"no revision {which} of {owner_id}/{dataset}") from None
            raise missing from None
        except NotFound:
            raise missing from None
        if not (
            _may_see(found.dataset.findability, owner_id, userid)
            and _may_see(found.revision.findability, owner_id, userid)
        ):
            if which != "latest" and _may_see(found.dataset.findability, owner_id, userid):
                raise NotFound(f"no revision {which} of {owner_id}/{dataset}")
            raise missing
        return found

    def engine_record(self, found: DatasetRevision) -> dict[str, Any] | None:
        """The engine's own record of the revision's run (DPP's dashboard), if it has one,
        cleaned as events are (no tracebacks, no server paths)."""
        if self.dashboard is None:
            return None
        owner_id, dataset = found.dataset.owner_id, found.dataset.name
        record = self.dashboard.record(f"{owner_id}/{dataset}", found.revision.revision)
        if record is None:
            return None
        if "error_log" in record:
            record["error_log"] = self.reports.errors(record["error_log"] or [], owner_id, dataset)
        if isinstance(record.get("reason"), str):
            lines = self.reports.lines(record["reason"].splitlines(), owner_id, dataset)
            record["reason"] = "\n".join(lines)
        # What else it holds (its statistics name where DPP wrote the package): no server
        # paths, no secrets, as an event's.
        return {
            key: value
            if key in ("error_log", "reason")
            else self.reports.value(value, owner_id, dataset)
            for key, value in record.items()
        }

    def shown_pipeline(self, found: DatasetRevision, pipeline: Any) -> Any:
        """A pipeline definition as users see it: paths relative to the dataset's folder,
        no secret (the hook token)."""
        return self.reports.value(pipeline, found.dataset.owner_id, found.dataset.name)

    def shown_main_pipeline(self, found: DatasetRevision) -> str:
        """The revision's main pipeline as users see it (see :meth:`shown_pipeline`), as
        JSON text: read as text (the ``info`` view), cleaned in the text."""
        text = found.revision.main_pipeline_text
        if text is None:
            return "null"
        return self.reports.json_text(text, found.dataset.owner_id, found.dataset.name)

    def list_datasets(self, owner_id: str | None, viewer: Viewer, page: Page) -> DatasetPage:
        """The owner's datasets (everyone's published ones when ``owner_id`` is None);
        private and unlisted ones only for the owner."""
        userid = viewer.userid  # a token that does not verify: 401, whoever's listing
        if owner_id is not None and not is_segment(owner_id):
            return DatasetPage([], 0)  # no owner has such an id: nothing to read
        include_hidden = owner_id is not None and userid == owner_id
        return self.registry.list_datasets(owner_id, include_hidden, page.limit, page.offset)

    def revisions(self, found: DatasetRevision, viewer: Viewer) -> list[Any]:
        """The dataset's revisions, newest first, that the viewer may see: the rule of
        :meth:`revision`, so that a page listing them shows what the API answers."""
        owner_id, dataset = found.dataset.owner_id, found.dataset.name
        userid = viewer.userid
        return [
            revision
            for revision in self.registry.revisions(owner_id, dataset)
            if _may_see(revision.findability, owner_id, userid)
        ]
