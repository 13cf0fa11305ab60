"""specstore's pipeline steps, as ``dataflows`` steps: the same code on both engines.

Each ``specstore.<name>`` processor of a plan is one function here that turns the
step's parameters into dataflows steps. The embedded runner puts them into its
flow; DPP runs them through the processors in ``processors/`` (``run(name)``).

A run writes only into its *staging* folder, ``<dataset folder>/.staging/<revision>``,
and its last step publishes it:

* ``specstore.stage``: empties the staging folder and notes when the run started;
* ``specstore.load``: fetches each resource under the fetch policy (:mod:`.fetch`) and
  loads it as a table (its format from a fixed list, its declared schema applied), or,
  for a resource that is not a table, copies it byte for byte into the package; what
  it downloads and unpacks stays in the run's staging folder (``.tmp``), and goes when
  the load ends, however it ends; the version of each source it read goes into the
  run's statistics (:mod:`.sources`);
* ``specstore.dump_to_sql``: dataflows' ``dump_to_sql``, the connection URL read from
  ``ENGINE_<NAME>`` and pinned to the psycopg2 driver for PostgreSQL; in a database
  that several owners' outputs share, each table is named for its owner and dataset
  (:func:`table_name`);
* ``specstore.package``: completes the dumped data package: the files that are not
  tables, a README.md, the descriptor without engine-only keys, and the zip outputs;
* ``specstore.publish`` (in :mod:`.publication`, which commits the publication first):
  swaps the staged outputs into the dataset folder (:func:`publish_outputs`), unless a
  newer revision's outputs are there already.

Every path written is checked to stay inside its folder and no symbolic link is
followed out of it.
"""

from __future__ import annotations

import codecs
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from .fetch import Fetched, FetchError, Limits, check_unpacked_size, fetch_to_file
from .parsing import date_fields, read_dates
from .report import TableCheck
from .sources import source_stat, version

log = logging.getLogger("specstore")

# The formats a table is loaded from; anything else is copied as a file.
TABLE_FORMATS = ("csv", "tsv", "xls", "xlsx", "ods", "json", "ndjson", "jsonl")
# Formats tabulator reads as text, where the declared encoding matters.
TEXT_FORMATS = ("csv", "tsv", "json", "ndjson", "jsonl")
STAGING_DIR = ".staging"
# Per revision, what the package step adds to the package (too large for parameters).
PLANS_DIR = ".plans"
# Properties of a table that its loading sets: the metadata never overrides them.
COMPUTED_TABLE_KEYS = frozenset(
    {
        "name",
        "path",
        "schema",
        "format",
        "encoding",
        "bytes",
        "hash",
        "count_of_rows",
        "dialect",
        "profile",
    }
)
# Where a run's steps download and unpack, inside its staging folder.
TEMPORARY_DIR = ".tmp"
STARTED_FILE = ".started"
REVISION_FILE = ".revision"
LOCK_FILE = ".lock"
PACKAGE_DIR = "datapackage"
DESCRIPTOR_FILE = "datapackage.json"
README_FILE = "README.md"
# In a run's staging folder, the publication's work (see .publication): what the load
# keeps of each table (its check, its source file), and the derived files.
PUBLICATION_DIR = ".publication"
VALIDATION_DIR = "validation"
ARCHIVE_DIR = "archive"
DEADLINE_CHECK_ROWS = 1000
# A load step's statistic ``retries.<resource>``: how many times its fetch was tried again.
RETRIES_STAT = "retries"
# Spreadsheets whose merged cells are filled are read whole into memory (openpyxl's
# read-only mode has no merged cells): only those that unpack to at most this.
MAX_MERGED_CELLS_UNPACKED_BYTES = 64 * 1024 * 1024
# The longest table name every database takes whole (PostgreSQL's limit is 63 bytes,
# and the names it derives, such as ``<table>_<field>_enum``, must still start with it).
MAX_TABLE_NAME_BYTES = 50
_UTF8 = re.compile(r"^utf[-_]?8(-sig)?$")
# tabulator's word for a file that is not in the encoding it read it in.
_ENCODING_FAILURE = re.compile(r'Cannot parse the source .*using "(?P<encoding>[^"]+)" encoding')


class StepError(Exception):
    """A step cannot do its work; the message says why, in words a user can act on, and
    ``details`` (lines) what else the user should see."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


# -- paths ------------------------------------------------------------------------------


def inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused unless it stays inside ``folder`` once resolved
    (``..``, absolute paths and symbolic links out of it included)."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or "\\" in relative or not pure.parts:
        raise StepError(f"the path {relative!r} is not a relative path inside the package")
    root = folder.resolve()
    path = (root / pure).resolve()
    if path == root or not path.is_relative_to(root):
        raise StepError(f"the path {relative!r} leads outside its folder")
    return path


def child(folder: Path, name: str) -> Path:
    """``folder / name``, where ``name`` (an owner id, a dataset name) must be a single
    path segment: refused (ValueError) unless it is. The check is on the name alone, with
    no call to the file system: the folders above are the server's own, and the name is
    all that a spec controls."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a folder name")
    return folder / name


def _started(staging: Path) -> float | None:
    try:
        return float((staging / STARTED_FILE).read_text())
    except (OSError, ValueError):
        return None


def _deadline(staging: Path, run_timeout: float | None) -> float | None:
    started = _started(staging)
    return None if started is None or not run_timeout else started + run_timeout


def table_name(owner_id: str, dataset: str, resource: str) -> str:
    """The table an ``rdbms`` output writes a resource into: ``<ownerid>/<dataset>/<resource>``,
    unique to the owner and dataset (no owner id, dataset or resource name holds a ``/``),
    so that no spec can name a table of another owner's, or of anything else in the
    database. A name longer than ``MAX_TABLE_NAME_BYTES`` keeps its start and ends in
    ``~`` and 16 hexadecimal digits of its SHA-256 (no short name holds a ``~``)."""
    name = f"{owner_id}/{dataset}/{resource}"
    if len(name.encode("utf-8")) <= MAX_TABLE_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{name[: MAX_TABLE_NAME_BYTES - 17]}~{digest}"


# -- specstore.stage -------------------------------------------------------------------------


def stage(parameters: dict[str, Any]) -> list[Any]:
    """Empty the run's staging folder and note when the run started.

    This is done when the step is built, not when data flows: both engines build a
    pipeline's steps in order (the embedded runner one after the other; each of DPP's
    processors once its input's data package has arrived, which is after this step),
    and some later steps touch their output as they are built (``dump_to_sql`` connects).
    """
    staging = Path(parameters["staging"])
    # Whatever earlier runs left staged (a failed run's outputs stay for a look until
    # the next run): one run of a dataset at a time, so none of it is in use.
    shutil.rmtree(staging.parent, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / STARTED_FILE).write_text(repr(time.time()))
    return []


# -- specstore.load --------------------------------------------------------------------------


def load(parameters: dict[str, Any]) -> list[Any]:
    """Every resource of ``resources`` (each with the step's staging folder, limits and
    deadline): a table (rows into the flow, under its ``path`` in the package) or a file
    (into the staged package). A plan of an older release has one resource per step,
    the step's own parameters."""
    from dataflows import update_resource

    shared = {key: value for key, value in parameters.items() if key != "resources"}
    resources = parameters.get("resources")
    steps: list[Any] = []
    for given in resources if isinstance(resources, list) else [{}]:
        resource = {**shared, **given}
        if resource.get("file"):
            steps.append(_file_step(resource))
            continue
        steps.append(_table_step(resource))
        if resource.get("path"):
            steps.append(update_resource(resource["name"], path=resource["path"]))
    return steps


def retries_stat(resource: str) -> str:
    """The statistic a load step counts a resource's fetch retries in."""
    return f"{RETRIES_STAT}.{resource}"


def note_fetched(stats: dict[str, Any], resource: str, fetched: Fetched) -> None:
    """What a run's statistics say of a resource's download: the version it got (for the
    next scheduled run to ask whether it changed) and the retries it took, if any."""
    stats[source_stat(resource)] = version(fetched)
    if fetched.retries:
        stats[retries_stat(resource)] = fetched.retries


def _file_step(parameters: dict[str, Any]) -> Any:
    from dataflows import DataStreamProcessor

    url, name = parameters["url"], parameters["name"]
    limits = Limits.from_parameters(parameters.get("limits"))
    folder = Path(parameters["staging"]) / PACKAGE_DIR

    class FileCopy(DataStreamProcessor):
        """The file fetched into the staged package as the package passes."""

        def process_datapackage(self, dp: Any) -> Any:
            folder.mkdir(parents=True, exist_ok=True)
            target = inside(folder, parameters["file"])
            target.parent.mkdir(parents=True, exist_ok=True)
            inside(folder, parameters["file"])  # the folders just made, checked again
            deadline = _deadline(Path(parameters["staging"]), parameters.get("run-timeout"))
            try:
                fetched = fetch_to_file(url, target, limits, deadline)
            except FetchError as exc:
                target.unlink(missing_ok=True)
                raise StepError(f"resource {name}: {exc}") from None
            except FileExistsError:
                raise StepError(
                    f"resource {name}: two resources have the path {parameters['file']!r}"
                ) from None
            note_fetched(self.stats, name, fetched)
            log.info("resource %s: %s copied as a file (%d bytes)", name, url, fetched.size)
            return dp

    return FileCopy()


def _temporary_folder(staging: str | None) -> Path:
    """A new folder for one load's download and what is unpacked from it: in the run's
    staging folder, which the run's next start empties whatever happened to this one,
    and where (``tempfile.tempdir``) the libraries that read the file unpack it too."""
    if not staging:
        return Path(tempfile.mkdtemp(prefix="specstore-load-"))
    parent = Path(staging) / TEMPORARY_DIR
    parent.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(parent)
    return Path(tempfile.mkdtemp(prefix="load-", dir=parent))


def _table_step(parameters: dict[str, Any]) -> Any:
    from dataflows import load as dataflows_load

    class TableLoad(dataflows_load):
        """dataflows' ``load`` of a file fetched here first, under the policy.

        The file is a local copy with a name of specstore's choosing, so dataflows
        never sees the URL: no other scheme, no nested data package, no SQL source.
        """

        def __init__(self) -> None:
            self.url, self.resource = parameters["url"], parameters["name"]
            self.limits = Limits.from_parameters(parameters.get("limits"))
            self.format = str(parameters.get("format") or "csv").lower()
            if self.format not in TABLE_FORMATS:
                raise StepError(f"resource {self.resource}: {self.format!r} is not a table format")
            staging = parameters.get("staging")
            self.deadline = (
                _deadline(Path(staging), parameters.get("run-timeout")) if staging else None
            )
            self.folder = _temporary_folder(staging)
            self.local = self.folder / f"data.{self.format}"
            # The publication's working folder: the table's check and its source file.
            self.publication = Path(staging) / PUBLICATION_DIR if staging else None
            fields = (parameters.get("schema") or {}).get("fields") or []
            self.check = TableCheck(
                self.resource, self.url, [str(field.get("name")) for field in fields]
            )
            self.last_refused = -1
            options = dict(parameters.get("options") or {})
            options.pop("format", None)
            schema = parameters.get("schema")
            extra: dict[str, Any] = {}
            if schema:
                extra = {
                    "override_schema": schema,
                    "cast_strategy": dataflows_load.CAST_WITH_SCHEMA,
                    "on_error": self.refuse_value,
                }
                if dates := date_fields(schema):
                    extra["post_parse"] = [read_dates(dates)]
            super().__init__(
                str(self.local), name=self.resource, format=self.format, **options, **extra
            )

        def process_datapackage(self, dp: Any) -> Any:
            try:
                return self.fetch_and_open(dp)
            except BaseException:
                # No rows will flow, so process_resources never cleans up.
                shutil.rmtree(self.folder, ignore_errors=True)
                raise

        def fetch_and_open(self, dp: Any) -> Any:
            try:
                fetched = fetch_to_file(self.url, self.local, self.limits, self.deadline)
                check_unpacked_size(self.local, self.limits.max_unpacked_bytes, self.url)
            except FetchError as exc:
                raise StepError(f"resource {self.resource}: {exc}") from None
            note_fetched(self.stats, self.resource, fetched)
            log.info("resource %s: fetched %s (%d bytes)", self.resource, self.url, fetched.size)
            if not parameters.get("schema"):
                log.info("resource %s: no schema given: its types are inferred", self.resource)
            self.check_encoding()
            self.check_merged_cells()
            try:
                return self.safe_process_datapackage(dp)
            except StepError:
                raise
            except Exception as exc:
                raise self.unreadable(exc) from None

        def unreadable(self, exc: BaseException) -> StepError:
            """Why the file cannot be read as its format, in one line, with the spec's fix
            when it is in another encoding than it was read in."""
            said = _message(exc, self.local)
            encoding = _ENCODING_FAILURE.search(said)
            if encoding:
                said = f"its text is not {encoding['encoding']}"
            if "encoding" in said or encoding:
                said += (
                    f": declare the file's encoding in the spec, processing: [{{input: "
                    f"{self.resource}, tabulator: {{encoding: <its encoding>}}}}]"
                )
            return StepError(
                f"resource {self.resource}: {self.url} cannot be read as {self.format}: {said}"
            )

        def check_merged_cells(self) -> None:
            """Filling merged cells reads the whole workbook into memory: refused for one
            that unpacks to more than MAX_MERGED_CELLS_UNPACKED_BYTES."""
            if not self.options.get("fill_merged_cells") or self.format != "xlsx":
                return
            try:
                check_unpacked_size(self.local, MAX_MERGED_CELLS_UNPACKED_BYTES, self.url)
            except FetchError:
                raise StepError(
                    f"resource {self.resource}: fill_merged_cells reads a workbook whole, and "
                    f"{self.url} unpacks to more than {MAX_MERGED_CELLS_UNPACKED_BYTES} bytes: "
                    "leave the option out, or split the workbook"
                ) from None

        def check_encoding(self) -> None:
            """The text's encoding, from the whole file rather than a guess from its
            start (as tabulator and some clients make): a declared encoding that the
            file contradicts, being valid UTF-8 with bytes beyond ASCII, gives way to
            UTF-8 (such a file is UTF-8 but by a freak); with none declared, a file that
            is not UTF-8 is read in the encoding charset-normalizer detects around its
            first byte that is not, and the log says so."""
            if self.format not in TEXT_FORMATS or self.options.get("compression") not in (
                None,
                "no",
            ):
                return
            declared = str(self.options.get("encoding") or "")
            if declared and _UTF8.match(declared.lower()):
                return
            beyond, first_not_utf8 = _utf8_scan(self.local)
            if declared:
                if first_not_utf8 is None and beyond:
                    self.options["encoding"] = "utf-8"
                    log.info(
                        "resource %s: declared %s, but the whole file is valid UTF-8 with "
                        "characters beyond ASCII: read as UTF-8",
                        self.resource,
                        declared,
                    )
                return
            if first_not_utf8 is None:
                return
            detected = _detect_encoding(self.local, first_not_utf8)
            if detected is None:
                return
            self.options["encoding"] = detected
            log.info(
                "resource %s: not UTF-8: read as %s, the encoding detected (declare "
                "tabulator: {encoding: ...} in the spec's processing to choose another)",
                self.resource,
                detected,
            )

        def refuse_value(
            self, resource: str, row: dict, index: int, error: Exception, field: Any
        ) -> bool:
            """A value that fails its schema goes into the report (described, never
            quoted), and its row out of the outputs; the run fails once every row has
            been checked (see :mod:`.report`)."""
            self.check.failed(index, row.get(field.name) if field else None, error, field)
            if index != self.last_refused:
                self.last_refused = index
                self.check.rows += 1  # a row left out, counted as read
            return False

        def process_resources(self, resources: Any) -> Iterator[Any]:
            try:
                for index, rows in enumerate(super().process_resources(resources)):
                    is_ours = index == len(self.datapackage.resources) - 1
                    yield self.guarded(rows) if is_ours else rows
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)

        def keep_source(self) -> None:
            """Every row read: the table's check, and the file as fetched (the
            publication's ``source/tabular`` resource), kept for the publication."""
            if self.publication is None:
                return
            self.check.write(self.publication / VALIDATION_DIR)
            archive = self.publication / ARCHIVE_DIR
            archive.mkdir(parents=True, exist_ok=True)
            os.replace(self.local, child(archive, f"{self.resource}.{self.format}"))

        def guarded(self, rows: Iterator[dict]) -> Iterator[dict]:
            try:
                for count, row in enumerate(rows, 1):
                    if (
                        self.deadline
                        and count % DEADLINE_CHECK_ROWS == 0
                        and time.time() > self.deadline
                    ):
                        raise StepError("the run took longer than its time limit")
                    self.check.rows += 1
                    yield row
                self.keep_source()
            except StepError:
                raise
            except Exception as exc:
                raise self.unreadable(exc) from None

    return TableLoad()


def _utf8_scan(path: Path) -> tuple[bool, int | None]:
    """Whether the file has bytes beyond ASCII, and the offset of its first byte that is
    not UTF-8 (None: it is all UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    beyond, offset = False, 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return True, max(offset + exc.start - len(exc.object) + len(chunk), 0)
            beyond = beyond or not chunk.isascii()
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return True, max(offset - 3, 0)
    return beyond, None


# How much of a file the detector reads, around its first byte that is not UTF-8.
DETECTION_WINDOW_BYTES = 1024 * 1024


def _detect_encoding(path: Path, around: int) -> str | None:
    """The encoding charset-normalizer finds in a window of the file around ``around``
    (the file may be far larger than what it should hold in memory); None: none fits."""
    from charset_normalizer import from_bytes

    with path.open("rb") as handle:
        handle.seek(max(around - DETECTION_WINDOW_BYTES // 2, 0))
        window = handle.read(DETECTION_WINDOW_BYTES)
    best = from_bytes(window).best()
    return best.encoding if best is not None else None


def _message(exc: BaseException, local: Path | None = None) -> str:
    """The root cause of ``exc`` in one line, without local paths. Only the message's
    first line: parsers quote what they read on the lines after it (a JSON parser's
    context, a validator's row), which is the source's content, not the reason."""
    from dataflows.base.exceptions import ProcessorError

    while isinstance(exc, ProcessorError) and isinstance(exc.cause, BaseException):
        exc = exc.cause
    while exc.__cause__ is not None and not str(exc).strip():
        exc = exc.__cause__
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else exc.__class__.__name__
    if local is not None:
        text = text.replace(f'"{local}"', "the file").replace(str(local), "the file")
        text = text.replace(str(local.parent), "")
    return text


# -- specstore.dump_to_sql ---------------------------------------------------------------


def dump_to_sql(parameters: dict[str, Any]) -> list[Any]:
    from dataflows import dump_to_sql as dataflows_dump_to_sql

    engine = str(parameters["engine"])
    if engine.startswith("env://"):
        variable = engine.removeprefix("env://")
        engine = os.environ.get(variable, "")
        if not engine:
            raise StepError(
                f"the database connection {variable} is not configured where this pipeline runs"
            )
    return [dataflows_dump_to_sql(parameters["tables"], engine=sqlalchemy_url(engine))]


def sqlalchemy_url(url: str, driver: str = "psycopg2") -> str:
    """A PostgreSQL URL as every host hands them out (``postgres://``, ``postgresql://``),
    with ``driver`` named (psycopg2, which outputs are written with on both engines);
    other URLs as they are."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return f"postgresql+{driver}://" + url.removeprefix(prefix)
    return url


# -- specstore.package ----------------------------------------------------------------------


def package(parameters: dict[str, Any]) -> list[Any]:
    """Counts each table's rows as they pass, then, once the stream has ended (so the
    dump before this step has written the package), completes the package."""
    counts: dict[str, int] = {}

    def count(package: Any) -> Iterator[Any]:
        yield package.pkg
        for rows in package:
            yield _counted(rows, rows.res.name, counts)
        complete_package(parameters, counts)

    return [count]


def _counted(rows: Iterator[dict], name: str, counts: dict[str, int]) -> Iterator[dict]:
    counts[name] = 0
    for row in rows:
        counts[name] += 1
        yield row


def complete_package(parameters: dict[str, Any], counts: dict[str, int]) -> None:
    """The dumped package, completed: the input descriptor's properties (from the plan's
    metadata file), each table's row count and own properties, the files copied (with
    their size and hash) and inline resources listed, the README, and the zips."""
    folder = Path(parameters["path"])
    metadata: dict[str, Any] = {}
    if parameters.get("metadata"):
        try:
            metadata = json.loads(Path(parameters["metadata"]).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise StepError(
                f"the run's metadata cannot be read ({exc.__class__.__name__})"
            ) from None
    descriptor = portable_descriptor(json.loads((folder / DESCRIPTOR_FILE).read_text("utf-8")))
    name = descriptor.get("name")
    descriptor.update(metadata.get("package") or {})
    descriptor["name"] = name
    resources = descriptor.setdefault("resources", [])
    tables = metadata.get("tables") or {}
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        extra = tables.get(resource.get("name")) or {}
        resource.update(
            {key: value for key, value in extra.items() if key not in COMPUTED_TABLE_KEYS}
        )
        if resource.get("name") in counts:
            resource["count_of_rows"] = counts[resource["name"]]
    for file in metadata.get("files") or []:
        path = inside(folder, file["path"])
        content = path.read_bytes() if path.is_file() else None
        if content is None:
            raise StepError(f"resource {file.get('name')}: the file {file['path']!r} is missing")
        resources.append(
            {**file, "bytes": len(content), "hash": hashlib.md5(content).hexdigest()}  # noqa: S324
        )
    resources += metadata.get("inline") or []
    descriptor = with_hash(descriptor)
    write_json(folder / DESCRIPTOR_FILE, descriptor)
    readme = descriptor.get("readme")
    if isinstance(readme, str) and readme.strip() and not (folder / README_FILE).exists():
        text = readme if readme.endswith("\n") else readme + "\n"
        (folder / README_FILE).write_text(text, "utf-8")
    for zip_path in parameters.get("zips") or []:
        write_zip(folder, Path(zip_path))


def portable_descriptor(descriptor: dict[str, Any]) -> dict[str, Any]:
    """The descriptor without what only the engine that ran it puts there (DPP marks the
    resources it streams with ``dpp:*`` keys), so both engines write the same file."""
    for holder in [descriptor, *(descriptor.get("resources") or [])]:
        if isinstance(holder, dict):
            for key in [key for key in holder if key.startswith("dpp:")]:
                del holder[key]
    return descriptor


def with_hash(descriptor: dict[str, Any]) -> dict[str, Any]:
    """``descriptor`` with its ``hash`` computed as dataflows computes it."""
    descriptor.pop("hash", None)
    text = json.dumps(descriptor, indent=2, sort_keys=True, ensure_ascii=True)
    descriptor["hash"] = hashlib.md5(text.encode("ascii")).hexdigest()  # noqa: S324
    return descriptor


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")


# Every member gets this time, so that the same data makes the same archive.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_zip(folder: Path, target: Path) -> None:
    """The package folder as a zip: datapackage.json, README.md and every data file."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                member = zipfile.ZipInfo(path.relative_to(folder).as_posix(), _ZIP_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = 0o644 << 16
                with path.open("rb") as source, archive.open(member, "w") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)


# -- specstore.publish ---------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def published_revision(folder: Path) -> int:
    """The revision whose outputs are in ``folder`` (0: none, or from before revisions
    were noted)."""
    try:
        return int((folder / REVISION_FILE).read_text())
    except (OSError, ValueError):
        return 0


def publish_outputs(
    parameters: dict[str, Any], commit: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Swap the staged outputs into the dataset folder, unless a newer revision's are
    there already or the run is past its time limit, and ``commit`` the publication (its
    descriptor stored) first. What status shows of the publication (None: none)."""
    staging, target = Path(parameters["staging"]), Path(parameters["target"])
    revision = int(parameters["revision"])
    deadline = _deadline(staging, parameters.get("run-timeout"))
    if deadline is not None and time.time() > deadline:
        raise StepError("the run took longer than its time limit: its outputs were not published")
    with _locked(target):
        current = published_revision(target)
        if current > revision:
            raise StepError(
                f"superseded by revision {current}, whose outputs are published already: "
                "this run's outputs were not published"
            )
        summary = commit(parameters)
        trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=target))
        try:
            staged = {path.name for path in staging.iterdir() if not path.name.startswith(".")}
            for old in target.iterdir():
                if not old.name.startswith(".") and (old.name not in staged or old.is_dir()):
                    os.replace(old, trash / old.name)
            for name in sorted(staged):
                os.replace(staging / name, target / name)
            temporary = target / f"{REVISION_FILE}.{os.getpid()}"
            temporary.write_text(str(revision))
            os.replace(temporary, target / REVISION_FILE)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(staging, ignore_errors=True)
    _forget_older_plans(target / PLANS_DIR, revision)
    log.info("published revision %d's outputs", revision)
    return summary


def _forget_older_plans(folder: Path, revision: int) -> None:
    """The metadata files of revisions older than the one just published (its own stays:
    DPP may run a pipeline again)."""
    for path in folder.glob("*.json"):
        if path.stem.isdigit() and int(path.stem) < revision:
            path.unlink(missing_ok=True)
