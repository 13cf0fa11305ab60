"""Turning a revision's spec into pipelines, in datapackage-pipelines' own format.

One plan serves both engines: DPP runs it from the pipeline files that
:mod:`specstore.pipelines.dpp` writes, and the embedded runner runs the very same
steps with ``dataflows``. Each step is ``{"run": <processor>, "parameters": {...}}``.
Everything that reads what a stranger wrote (a URL, a file, a format, a name) is one
of specstore's own processors (``specstore.*``, from ``datapackage_pipelines_specstore``),
so one policy holds on both engines.

A dataset's plan is one main pipeline, ``<ownerid>/<dataset>``:

1. ``specstore.stage``: the run's staging folder, ``<dataset folder>/.staging/<revision>``;
2. ``specstore.load``, one step for every resource of the input data package (the
   spec's ``descriptor``, else its ``resource_info``, else the data package fetched from
   its URL), each from its own URL or the one ``resource-mapping`` gives for its name or
   path: tables (csv, tsv, xls, xlsx, ods; JSON with a schema) with the ``processing``
   step's tabulator options and declared schema, named its ``output``, each given a safe
   file name; every other resource as a file, byte for byte;
3. ``update_package``: the package's name (every other property of the input
   descriptor is applied by ``specstore.package``);
4. the outputs, all into the staging folder: the processed data package as files
   (``dump_to_path``, completed by ``specstore.package`` with the files, a README.md
   and the zips), ``sqlite`` and ``rdbms`` (``specstore.dump_to_sql``), then ``npm``;
5. ``specstore.publish``: the staged outputs swapped into the dataset folder.

A plan has the same few steps however many resources the data package has (DPP runs
each step as a process of its own), and at most ``max_resources`` of them.

Every path written is under ``OUTPUT_DIR/<ownerid>/<dataset>/``, whatever the spec
or the data package says, and every table an ``rdbms`` output writes is the owner's
and the dataset's own: ``<ownerid>/<dataset>/<resource>`` (see ``steps.table_name``).
Database connections are referred to as ``env://ENGINE_<NAME>`` so that no connection
string is ever written into a plan.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from datapackage_pipelines_specstore import npm
from datapackage_pipelines_specstore.fetch import FetchError, Limits, fetch_bytes, url_problem
from datapackage_pipelines_specstore.steps import (
    DESCRIPTOR_FILE,
    PACKAGE_DIR,
    PLANS_DIR,
    STAGING_DIR,
    TABLE_FORMATS,
    child,
    table_name,
)

from ..events import FAILED, INVALID
from ..registry import pipeline_id
from ..schedules import MAX_SCHEDULE_SECONDS, describe, schedule_seconds
from ..validation import SchemaValidator, storable
from .disk import sync_directory, write_file

if TYPE_CHECKING:
    from ..config import NpmRegistry

RESOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
# A file's path inside the package, kept when each of its parts is this plain.
FILE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ ()+-]{0,127}")
MAX_FILE_DEPTH = 8
EXTENSION = re.compile(r"[a-z0-9]{1,16}")
# Always tables; JSON only with a schema (otherwise it is a file).
ALWAYS_TABLES = ("csv", "tsv", "xls", "xlsx", "ods")
MEDIA_TYPES = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
}
# Properties of a resource that its loading sets, not its descriptor.
LOADER_KEYS = frozenset(
    {
        "name",
        "path",
        "data",
        "format",
        "mediatype",
        "encoding",
        "schema",
        "dialect",
        "profile",
        "scheme",
        "compression",
        "bytes",
        "hash",
        "count_of_rows",
    }
)
# Properties of the package that the run computes.
COMPUTED_PACKAGE_KEYS = frozenset(
    {"resources", "name", "profile", "hash", "bytes", "count_of_rows"}
)
NPM_DIR = "npm"
MAX_DESCRIPTOR_BYTES = 16 * 1024 * 1024
DESCRIPTOR_TIMEOUT_SECONDS = 10.0
# The key in a pipeline's definition that says which revision it was planned from.
REVISION_KEY = "specstore-revision"


class PlanError(Exception):
    """The spec cannot become pipelines: INVALID (the spec) or FAILED (its data)."""

    def __init__(self, state: str, *messages: str) -> None:
        super().__init__(*messages)
        self.state = state
        self.messages = list(messages)


@dataclass(frozen=True)
class Plan:
    main_id: str
    pipelines: dict[str, dict[str, Any]]
    # Files the steps read, by path: what is too large to travel as a step's parameters
    # (DPP hands parameters to a processor on its command line).
    attachments: dict[str, Any] = field(default_factory=dict)

    @property
    def main(self) -> dict[str, Any]:
        return self.pipelines[self.main_id]

    def write_attachments(self, sync: bool = False) -> None:
        """Write the attachments where the steps will read them (synced to the disk, if
        asked).

        Each is a file of one revision's, read only by that revision's run, which the
        engine gets once the file is written whole (the DPP pipeline file, the stored
        revision): no reader can find it half written, so it is written in place. A
        temporary file renamed over it would cost a rename, the dearest file system call
        of an upload.
        """
        for path, value in self.attachments.items():
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            # dumps, not dump: json.dump streams through the pure-Python encoder.
            write_file(target, json.dumps(value, ensure_ascii=False).encode("utf-8"), sync)
            if sync:
                sync_directory(target.parent)


@dataclass(frozen=True)
class Resource:
    """One resource of the input, as planned: where it comes from and what it becomes."""

    name: str
    url: str | None  # None: its data is inline in the descriptor
    format: str
    descriptor: dict[str, Any]  # the input's descriptor of it
    table: bool
    options: dict[str, Any] | None = None  # a table's tabulator options
    schema: dict[str, Any] | None = None  # a table's declared schema
    file: str | None = None  # its path in the package, for a resource copied as a file


def given_descriptor(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data package the spec carries (``descriptor``, else ``resource_info``), if any."""
    parameters = spec["inputs"][0].get("parameters") or {}
    descriptor = parameters.get("descriptor")
    if isinstance(descriptor, dict) and isinstance(descriptor.get("resources"), list):
        return descriptor
    info = parameters.get("resource_info")
    if isinstance(info, list) and info:
        return {**(descriptor if isinstance(descriptor, dict) else {}), "resources": info}
    return None


class OutputLayout:
    """Where a dataset's outputs go, confined to the output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def dataset_dir(self, owner_id: str, dataset: str) -> Path:
        try:
            return child(child(self.root, owner_id), dataset)
        except ValueError as exc:
            raise PlanError(INVALID, f"no output folder for {owner_id}/{dataset}: {exc}") from None

    def revision_paths(self, owner_id: str, dataset: str, revision: int) -> RevisionPaths:
        """Where a revision's run works and what it leaves: the dataset's folder checked
        once."""
        folder = self.dataset_dir(owner_id, dataset)
        return RevisionPaths(
            folder, folder / STAGING_DIR / str(revision), folder / PLANS_DIR / f"{revision}.json"
        )

    def staging(self, owner_id: str, dataset: str, revision: int) -> Path:
        return self.revision_paths(owner_id, dataset, revision).staging


@dataclass(frozen=True)
class RevisionPaths:
    folder: Path  # the dataset's: its published outputs
    staging: Path  # the run's work, published into the folder when it succeeds
    metadata: Path  # the descriptor's properties, for the run's last step


class Planner:
    def __init__(
        self,
        layout: OutputLayout,
        engine_url: Callable[[str], str | None],
        limits: Limits,
        npm_registry: Callable[[str], NpmRegistry | None] = lambda name: None,
        run_timeout: float | None = None,
        schedule_min_interval: float = 0.0,
        max_resources: int = 1000,
        engine_open_to: Callable[[str, str], bool] = lambda name, owner_id: True,
    ) -> None:
        self.layout = layout
        self.limits = limits
        self.run_timeout = run_timeout
        self.schedule_min_interval = schedule_min_interval
        self.max_resources = max_resources
        self._engine_url = engine_url
        self._engine_open_to = engine_open_to
        self._npm_registry = npm_registry

    # -- at upload: nothing here touches the network ------------------------------------

    def problems(self, spec: Mapping[str, Any]) -> list[str]:
        """What the schema cannot know: inputs on hosts this server may not fetch from,
        outputs naming connections or credentials it lacks, file names it reserves, and,
        when the spec carries its data package, whatever keeps that from being planned."""
        found = []
        source = spec["inputs"][0]
        problem = url_problem(source["url"], self.limits)
        if problem:
            found.append(f"inputs[0].url: {problem}")
        mapping = (source.get("parameters") or {}).get("resource-mapping") or {}
        for name, url in mapping.items():
            problem = url_problem(url, self.limits)
            if problem:
                found.append(f"inputs[0].parameters['resource-mapping'][{name!r}]: {problem}")
        found += self._output_problems(spec)
        found += self._npm_problems(spec)
        seconds = schedule_seconds(spec.get("schedule"))
        if seconds is not None and seconds < self.schedule_min_interval:
            found.append(
                f"schedule: {spec['schedule']!r} is more often than this server runs datasets: "
                f"{describe(self.schedule_min_interval)} at most (SCHEDULE_MIN_INTERVAL)"
            )
        if seconds is not None and seconds > MAX_SCHEDULE_SECONDS:
            found.append(
                f"schedule: {spec['schedule']!r} is longer than {describe(MAX_SCHEDULE_SECONDS)}"
            )
        descriptor = given_descriptor(spec)
        if not found and descriptor is not None:
            try:
                self.resources(spec, descriptor)
            except PlanError as exc:
                found += exc.messages
        return found

    def _output_problems(self, spec: Mapping[str, Any]) -> list[str]:
        found = []
        owner_id, dataset = spec["meta"]["ownerid"], spec["meta"]["dataset"]
        reserved = {PACKAGE_DIR, NPM_DIR, f"{dataset}.sqlite"}
        zips: set[str] = set()
        for index, output in enumerate(spec.get("outputs") or []):
            kind, parameters = output.get("kind"), output.get("parameters") or {}
            if kind == "rdbms":
                name = parameters["engine"]
                if self._engine_url(name) is None:
                    found.append(
                        f"outputs[{index}].parameters.engine: no database connection named "
                        f"{name!r} is configured on this server"
                    )
                elif not self._engine_open_to(name, owner_id):
                    found.append(
                        f"outputs[{index}].parameters.engine: the database connection {name!r} "
                        f"is not open to {owner_id}'s datasets on this server "
                        f"(ENGINE_{name.upper()}_OWNERS)"
                    )
            elif kind == "zip":
                name = parameters["out-file"]
                if name in reserved or name.startswith("."):
                    found.append(f"outputs[{index}].parameters['out-file']: {name!r} is reserved")
                elif name in zips:
                    found.append(
                        f"outputs[{index}].parameters['out-file']: another zip output is {name!r}"
                    )
                zips.add(name)
        return found

    def _npm_package(
        self, owner_id: str, dataset: str, credentials: str | None
    ) -> tuple[NpmRegistry | None, str]:
        """The registry the credentials name (None: none, or unknown) and the package name."""
        registry = self._npm_registry(credentials) if credentials else None
        return registry, npm.package_name(owner_id, dataset, registry.scope if registry else None)

    def _npm_problems(self, spec: Mapping[str, Any]) -> list[str]:
        meta = spec["meta"]
        outputs = [
            (index, output.get("parameters") or {})
            for index, output in enumerate(spec.get("outputs") or [])
            if output.get("kind") == "npm"
        ]
        found = [f"outputs[{index}]: a spec has at most one npm output" for index, _ in outputs[1:]]
        for index, parameters in outputs[:1]:
            credentials = parameters.get("credentials")
            registry, name = self._npm_package(meta["ownerid"], meta["dataset"], credentials)
            if credentials and registry is None:
                found.append(
                    f"outputs[{index}].parameters.credentials: no npm credentials named "
                    f"{credentials!r} are configured on this server"
                )
            problem = npm.name_problem(name)
            if problem:
                found.append(f"outputs[{index}]: {problem}")
            if (
                registry
                and not registry.scope
                and meta.get("findability", "published") != "published"
            ):
                found.append(
                    f"outputs[{index}]: a dataset that is not published is published to npm only "
                    f"as a restricted package, which needs a scope: the npm credentials "
                    f"{credentials!r} have none (NPM_{credentials.upper()}_SCOPE)"
                )
        return found

    # -- the input ---------------------------------------------------------------

    def descriptor(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The input data package's descriptor: the one the spec carries, else fetched
        from its URL (under the fetch policy)."""
        given = given_descriptor(spec)
        if given is not None:
            return given
        url = spec["inputs"][0]["url"]
        limits = dataclasses.replace(
            self.limits, timeout=min(self.limits.timeout, DESCRIPTOR_TIMEOUT_SECONDS)
        )
        try:
            content = fetch_bytes(url, limits, min(MAX_DESCRIPTOR_BYTES, self.limits.max_bytes))
        except FetchError as exc:
            said = str(exc)
            reason = said if said.startswith(url) else f"{url}: {said}"
            raise PlanError(FAILED, f"the data package {reason}") from None
        try:
            descriptor = json.loads(content)
        except ValueError:
            raise PlanError(INVALID, f"the data package {url} is not JSON") from None
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
            raise PlanError(INVALID, f"the data package {url} has no list of resources")
        # What no database stores (NUL, lone surrogates) is replaced: the plan is stored.
        return storable(descriptor)

    # -- the plan ----------------------------------------------------------------

    def plan(
        self,
        spec: Mapping[str, Any],
        revision: int,
        descriptor: Mapping[str, Any],
        hooks: list[str] | None = None,
    ) -> Plan:
        meta = spec["meta"]
        owner_id, dataset = meta["ownerid"], meta["dataset"]
        main_id = pipeline_id(owner_id, dataset)
        paths = self.layout.revision_paths(owner_id, dataset, revision)
        staging = paths.staging
        resources = self.resources(spec, descriptor)
        run_limit = {"run-timeout": self.run_timeout} if self.run_timeout else {}
        steps: list[dict[str, Any]] = [
            {
                "run": "specstore.stage",
                # The revision makes every revision's pipeline new to DPP (its cache_hash).
                "parameters": {"staging": str(staging), "revision": revision, **run_limit},
            }
        ]
        loaded: list[dict[str, Any]] = []
        for resource in resources:
            if resource.url is None:
                continue  # inline data: kept in the descriptor as it is
            parameters: dict[str, Any] = {"url": resource.url, "name": resource.name}
            if resource.table:
                parameters["format"] = resource.format
                # A safe file name in the package, whatever the input called it.
                parameters["path"] = f"{resource.name}.csv"
                if resource.options:
                    parameters["options"] = resource.options
                if resource.schema:
                    parameters["schema"] = resource.schema
            else:
                parameters["file"] = resource.file
            loaded.append(parameters)
        if loaded:
            steps.append(
                {
                    "run": "specstore.load",
                    "parameters": {
                        "resources": loaded,
                        "staging": str(staging),
                        "limits": self.limits.as_parameters(),
                        **run_limit,
                    },
                }
            )
        # The package's name (and, until the package is complete, its title); every other
        # property of the descriptor is applied by specstore.package, from the metadata file.
        steps.append({"run": "update_package", "parameters": {"name": dataset.lower()}})
        steps += self._outputs(spec, owner_id, dataset, revision, paths, resources)
        details: dict[str, Any] = {
            "title": f"{owner_id}/{dataset} revision {revision}",
            REVISION_KEY: revision,
            "pipeline": steps,
        }
        if hooks:
            details["hooks"] = list(hooks)
        metadata = _metadata(dataset, descriptor, resources)
        return Plan(main_id, {main_id: details}, {str(paths.metadata): metadata})

    def attachments_whole(self, owner_id: str, dataset: str, revision: int) -> bool:
        """Whether the files the revision's plan attached (its metadata) read, whole."""
        try:
            path = self.layout.revision_paths(owner_id, dataset, revision).metadata
            json.loads(path.read_bytes())
        except (PlanError, OSError, ValueError):
            return False
        return True

    def resources(self, spec: Mapping[str, Any], descriptor: Mapping[str, Any]) -> list[Resource]:
        """Every resource of the input as it will be planned; PlanError when one cannot be."""
        source = spec["inputs"][0]
        base_url = source["url"]
        mapping = (source.get("parameters") or {}).get("resource-mapping") or {}
        processing = spec.get("processing") or []
        listed = descriptor.get("resources") or []
        if len(listed) > self.max_resources:
            raise PlanError(
                INVALID,
                f"the data package has {len(listed)} resources, more than this server takes "
                f"in one dataset ({self.max_resources}, MAX_RESOURCES)",
            )

        found: list[tuple[str, str | None, str | None, dict[str, Any]]] = []
        for index, resource in enumerate(listed):
            if not isinstance(resource, dict):
                raise PlanError(
                    INVALID, f"resource #{index + 1} of the data package is not an object"
                )
            name, path = resource.get("name"), resource.get("path")
            if path is None and "data" in resource:
                what = name if isinstance(name, str) and name else f"#{index + 1}"
                found.append((what, None, None, resource))
                continue
            if not isinstance(path, str) or not path:
                what = name or f"#{index + 1}"
                raise PlanError(
                    INVALID, f"resource {what}: only resources with one path can be loaded"
                )
            try:
                if not isinstance(name, str) or not name:
                    name = posixpath.splitext(posixpath.basename(urlsplit(path).path))[0].lower()
                url = mapping.get(name) or mapping.get(path) or urljoin(base_url, _url_path(path))
            except ValueError:
                raise PlanError(
                    INVALID, f"resource #{index + 1}: {path!r} is not a URL or path"
                ) from None
            problem = url_problem(url, self.limits)
            if problem:
                raise PlanError(INVALID, f"resource {name}: {problem}")
            found.append((name, path, url, resource))

        known = {name for name, *_ in found} | {path for _, path, *_ in found if path}
        for index, step in enumerate(processing):
            if step["input"] not in known:
                missing = step["input"]
                raise PlanError(
                    INVALID,
                    f"processing[{index}].input: the data package has no resource {missing!r}",
                )

        planned: list[Resource] = []
        for name, path, url, resource in found:
            if url is None or path is None:
                planned.append(Resource(name, None, "", resource, table=False))
                continue
            steps = [step for step in processing if step["input"] in (name, path)]
            planned += self._variants(name, path, url, resource, steps)
        _check_names(planned)
        return planned

    def _variants(
        self,
        name: str,
        path: str,
        url: str,
        resource: dict[str, Any],
        steps: list[dict[str, Any]],
    ) -> list[Resource]:
        """What one input resource becomes: a file, or one table per processing step."""
        declared = _format(resource, path)
        table = declared in ALWAYS_TABLES or (
            declared in TABLE_FORMATS and (bool(resource.get("schema")) or bool(steps))
        )
        if not table and not steps:
            file = _file_path(name, path, declared)
            return [Resource(name, url, declared, resource, table=False, file=file)]
        variants = [
            (step["output"], step.get("tabulator") or {}, step.get("schema")) for step in steps
        ] or [(name, {}, None)]
        planned = []
        for output, options, schema in variants:
            chosen = str(options.get("format") or declared).lower()
            if chosen not in TABLE_FORMATS:
                raise PlanError(
                    INVALID,
                    f"resource {output!r}: {chosen!r} is not a table format "
                    f"({', '.join(TABLE_FORMATS)})",
                )
            schema = schema or resource.get("schema")
            if schema is not None:
                problem = _schema_problem(schema)
                if problem:
                    raise PlanError(INVALID, f"resource {output!r}: its schema {problem}")
            options = {key: value for key, value in options.items() if key != "format"}
            if isinstance(resource.get("encoding"), str) and "encoding" not in options:
                options["encoding"] = resource["encoding"]
            if isinstance(options.get("skip_rows"), int):
                # A number of rows (as the DataHub client writes it): the first N rows.
                options["skip_rows"] = list(range(1, options["skip_rows"] + 1))
            planned.append(
                Resource(output, url, chosen, resource, True, options or None, schema or None)
            )
        return planned

    def _outputs(
        self,
        spec: Mapping[str, Any],
        owner_id: str,
        dataset: str,
        revision: int,
        paths: RevisionPaths,
        resources: list[Resource],
    ) -> list[dict[str, Any]]:
        staging, metadata_file = paths.staging, paths.metadata
        tables = [resource.name for resource in resources if resource.table]
        package = staging / PACKAGE_DIR
        sql: list[dict[str, Any]] = []
        zips: list[str] = []
        # The npm output comes last: if publishing fails, every other output is complete.
        last: list[dict[str, Any]] = []
        for index, output in enumerate(spec.get("outputs") or []):
            kind, parameters = output["kind"], output.get("parameters") or {}
            if kind == "sqlite":
                # The dataset's own file: its tables are named as its resources.
                engine = f"sqlite:///{staging / f'{dataset}.sqlite'}"
                named = {name: {"resource-name": name} for name in tables}
                sql.append(
                    {
                        "run": "specstore.dump_to_sql",
                        "parameters": {"tables": named, "engine": engine},
                    }
                )
            elif kind == "rdbms":
                # A database other owners write into: each table is the dataset's own.
                engine = f"env://ENGINE_{parameters['engine'].upper()}"
                named = {
                    table_name(owner_id, dataset, name): {"resource-name": name} for name in tables
                }
                sql.append(
                    {
                        "run": "specstore.dump_to_sql",
                        "parameters": {"tables": named, "engine": engine},
                    }
                )
            elif kind == "zip":
                zips.append(str(_plain_file(staging, parameters["out-file"])))
            elif kind == "npm":
                last.append(self._npm_step(spec, owner_id, dataset, revision, staging, parameters))
            else:
                # The schema admits no other kind; a spec stored under an older one might.
                raise PlanError(INVALID, f"outputs[{index}].kind: unknown output kind {kind!r}")
        finish: dict[str, Any] = {"path": str(package), "metadata": str(metadata_file)}
        if zips:
            finish["zips"] = zips
        publish = {
            "staging": str(staging),
            "target": str(paths.folder),
            "revision": revision,
        }
        if self.run_timeout:
            publish["run-timeout"] = self.run_timeout
        # The SQL outputs before the files: the run's statistics are the last dumper's,
        # and dump_to_path's (bytes and hash of the data package) say more.
        return [
            *sql,
            {"run": "dump_to_path", "parameters": {"out-path": str(package)}},
            {"run": "specstore.package", "parameters": finish},
            *last,
            {"run": "specstore.publish", "parameters": publish},
        ]

    def _npm_step(
        self,
        spec: Mapping[str, Any],
        owner_id: str,
        dataset: str,
        revision: int,
        staging: Path,
        parameters: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The npm output's step. Its credentials are named, never included: the process
        that runs the step reads them from its environment (NPM_<NAME>_*)."""
        credentials = parameters.get("credentials")
        _, name = self._npm_package(owner_id, dataset, credentials)
        step: dict[str, Any] = {
            "name": name,
            # Every revision a new major version: a revision may change the data's shape.
            "version": f"{revision}.0.0",
            "dataset": f"{owner_id}/{dataset}",
            "revision": revision,
            "source": str(staging / PACKAGE_DIR),
            "out-path": str(staging / NPM_DIR),
        }
        if credentials:
            step["credentials"] = credentials.upper()
            published = spec["meta"].get("findability", "published") == "published"
            step["access"] = "public" if published else "restricted"
        return {"run": npm.PROCESSOR, "parameters": step}


def _metadata(
    dataset: str, descriptor: Mapping[str, Any], resources: list[Resource]
) -> dict[str, Any]:
    """What ``specstore.package`` adds to the dumped package: every property of the input's
    descriptor but those the run computes, each table's own properties, the files copied
    and the resources with inline data."""
    package = {
        key: value
        for key, value in descriptor.items()
        if key not in COMPUTED_PACKAGE_KEYS and not key.startswith("dpp:")
    }
    package.setdefault("title", dataset)
    return {
        "package": package,
        "tables": {
            resource.name: {
                key: value
                for key, value in resource.descriptor.items()
                if key not in LOADER_KEYS and not key.startswith("dpp:")
            }
            for resource in resources
            if resource.table
        },
        "files": [
            {
                **_kept(resource.descriptor),
                "name": resource.name,
                "path": resource.file,
                "format": resource.format,
            }
            for resource in resources
            if not resource.table and resource.url is not None
        ],
        "inline": [resource.descriptor for resource in resources if resource.url is None],
    }


def _kept(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """A file resource's own properties, without those the copy recomputes."""
    return {
        key: value
        for key, value in descriptor.items()
        if key not in ("path", "data", "bytes", "hash", "scheme") and not key.startswith("dpp:")
    }


def _url_path(path: str) -> str:
    """A resource's path as a URL reference: a relative path's spaces, backslashes and
    other characters URLs do not hold are percent-encoded; an absolute URL is as given."""
    if "://" in path or path.startswith("//"):
        return path
    return quote(path, safe="/:@!$&'()*+,;=~?#%")


def _format(resource: Mapping[str, Any], path: str) -> str:
    declared = resource.get("format")
    if isinstance(declared, str) and declared.strip():
        return declared.strip().lower()
    mediatype = resource.get("mediatype")
    if isinstance(mediatype, str) and mediatype.lower() in MEDIA_TYPES:
        return MEDIA_TYPES[mediatype.lower()]
    extension = posixpath.splitext(urlsplit(path).path)[1].lstrip(".").lower()
    return extension


def _file_path(name: str, path: str, format: str) -> str:
    """Where a file resource goes in the package: its own relative path when every part
    of it is plain, else ``<name>.<extension>``."""
    parts = unquote(urlsplit(path).path).split("/") if "://" not in path else []
    if (
        parts
        and len(parts) <= MAX_FILE_DEPTH
        and all(FILE_PART.fullmatch(part) for part in parts)
        and not path.startswith("/")
    ):
        return "/".join(parts)
    extension = format if EXTENSION.fullmatch(format or "") else ""
    return f"{name}.{extension}" if extension else name


def _plain_file(folder: Path, name: str) -> Path:
    """``name`` in ``folder`` (a run's staging folder, made new for the run), where
    ``name`` must be one path component: no separator, not ``.`` or ``..``."""
    if name in ("", ".", "..") or PurePosixPath(name).name != name:
        raise PlanError(INVALID, f"the output file name {name!r} is not a plain file name")
    return folder / name


def _check_names(planned: list[Resource]) -> None:
    names: set[str] = set()
    paths = {DESCRIPTOR_FILE}
    for resource in planned:
        if not RESOURCE_NAME.fullmatch(resource.name):
            raise PlanError(
                INVALID,
                f"resource {resource.name!r}: names are lower-case letters, digits, '.', '_', '-'",
            )
        if resource.name in names:
            raise PlanError(INVALID, f"resource {resource.name!r}: two resources have this name")
        names.add(resource.name)
        path = f"{resource.name}.csv" if resource.table else resource.file
        if path is None:
            continue
        if path.lower() in paths:
            raise PlanError(INVALID, f"resource {resource.name!r}: two files would be {path!r}")
        paths.add(path.lower())


@functools.cache
def _table_schema_validator() -> SchemaValidator:
    from importlib import resources

    profile = json.loads(
        resources.files("tableschema").joinpath("profiles", "table-schema.json").read_text("utf-8")
    )
    return SchemaValidator(profile)


def _schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a Table Schema that can be applied, or None."""
    if not isinstance(schema, dict) or not isinstance(schema.get("fields"), list):
        return "is not a Table Schema (an object with a list of fields)"
    problems = _table_schema_validator().errors(schema)
    if problems:
        return f"is not a valid Table Schema: {problems[0]}"
    return None
