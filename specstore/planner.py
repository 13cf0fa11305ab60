"""Turning a revision's spec into pipelines, in datapackage-pipelines' own format.

One plan serves both engines: DPP runs it from the pipeline-spec files that
:mod:`specstore.dpp` writes, and the embedded runner runs the very same steps
with ``dataflows``, the library DPP's standard processors wrap. Each step is
``{"run": <processor>, "parameters": {...}}`` with DPP's parameter names.

A dataset's plan is one main pipeline, ``<ownerid>/<dataset>``:

1. ``load`` each resource of the input data package from its own URL (or the
   one ``resource-mapping`` gives), with the ``processing`` step's tabulator
   options applied to its ``input`` and the result named its ``output``;
2. ``update_package`` / ``update_resource``: the package's metadata, and a
   safe file name for every resource;
3. the outputs: always the processed data package as files
   (``dump_to_path``), then ``sqlite``, ``rdbms`` and ``zip`` as asked, and
   last ``npm`` (``specstore.npm_publish``, from ``datapackage_pipelines_specstore``:
   its name and version are planned here, its credentials only named).

Every path written is under ``OUTPUT_DIR/<ownerid>/<dataset>/``, whatever
the spec says. Database connections are referred to as ``env://ENGINE_<NAME>``
so that no connection string is ever written into a plan.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from datapackage_pipelines_specstore.npm import PROCESSOR as NPM_PROCESSOR

from .downloads import Downloader, DownloadError
from .events import FAILED, INVALID

if TYPE_CHECKING:
    from .config import NpmRegistry

RESOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
PACKAGE_METADATA = (
    "title",
    "description",
    "licenses",
    "sources",
    "keywords",
    "version",
    "homepage",
)
PROCESSED_PACKAGE_DIR = "datapackage"
NPM_DIR = "npm"
NPM_NAME_MAX_LENGTH = 214
_NOT_IN_NPM_NAMES = re.compile(r"[^a-z0-9._~-]+")
MAX_DESCRIPTOR_BYTES = 1024 * 1024
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

    @property
    def main(self) -> dict[str, Any]:
        return self.pipelines[self.main_id]


def pipeline_id(owner_id: str, dataset: str) -> str:
    return f"{owner_id}/{dataset}"


def npm_package_name(owner_id: str, dataset: str, scope: str | None = None) -> str:
    """``<ownerid>-<dataset>`` as npm allows names (lower case, URL-safe), in ``scope`` if any."""
    name = _NOT_IN_NPM_NAMES.sub("-", f"{owner_id}-{dataset}".lower()).lstrip("._-")
    return f"@{scope}/{name}" if scope else name


class OutputLayout:
    """Where a dataset's outputs go, confined to the output folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def confined(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise PlanError(INVALID, f"the output path {path} is outside the output folder")
        return resolved

    def dataset_dir(self, owner_id: str, dataset: str) -> Path:
        return self.confined(self.root / owner_id / dataset)

    def processed_package(self, owner_id: str, dataset: str) -> Path:
        return self.dataset_dir(owner_id, dataset) / PROCESSED_PACKAGE_DIR

    def sqlite_file(self, owner_id: str, dataset: str) -> Path:
        return self.dataset_dir(owner_id, dataset) / f"{dataset}.sqlite"

    def file(self, owner_id: str, dataset: str, name: str) -> Path:
        directory = self.dataset_dir(owner_id, dataset)
        path = self.confined(directory / name)
        if path.parent != directory:
            raise PlanError(INVALID, f"the output file name {name!r} is not a plain file name")
        return path


class Planner:
    def __init__(
        self,
        layout: OutputLayout,
        engine_url: Callable[[str], str | None],
        downloader: Downloader,
        npm_registry: Callable[[str], NpmRegistry | None] = lambda name: None,
    ) -> None:
        self.layout = layout
        self._engine_url = engine_url
        self._npm_registry = npm_registry
        self._downloader = downloader
        self.policy = downloader.policy

    # -- at upload ---------------------------------------------------------------

    def problems(self, spec: Mapping[str, Any]) -> list[str]:
        """What the schema cannot know: outputs naming connections or npm credentials
        this server lacks, inputs on hosts this server may not fetch from."""
        found = []
        source = spec["inputs"][0]
        problem = self.policy.problem(source["url"])
        if problem:
            found.append(f"inputs[0].url: {problem}")
        mapping = (source.get("parameters") or {}).get("resource-mapping") or {}
        for name, url in mapping.items():
            problem = self.policy.problem(url)
            if problem:
                found.append(f"inputs[0].parameters['resource-mapping'][{name!r}]: {problem}")
        for index, output in enumerate(spec.get("outputs") or []):
            if output.get("kind") == "rdbms":
                name = output["parameters"]["engine"]
                if self._engine_url(name) is None:
                    found.append(
                        f"outputs[{index}].parameters.engine: no database connection named "
                        f"{name!r} is configured on this server"
                    )
        found += self._npm_problems(spec)
        return found

    def _npm_package(
        self, owner_id: str, dataset: str, credentials: str | None
    ) -> tuple[NpmRegistry | None, str]:
        """The registry the credentials name (None: none, or unknown) and the package name."""
        registry = self._npm_registry(credentials) if credentials else None
        return registry, npm_package_name(owner_id, dataset, registry.scope if registry else None)

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
            if len(name) > NPM_NAME_MAX_LENGTH:
                found.append(
                    f"outputs[{index}]: the npm package name {name!r} is longer than "
                    f"{NPM_NAME_MAX_LENGTH} characters"
                )
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
        """The input data package's descriptor: from the spec if it carries one, else fetched."""
        source = spec["inputs"][0]
        given = (source.get("parameters") or {}).get("descriptor")
        if isinstance(given, dict) and given.get("resources"):
            return given
        url = source["url"]
        try:
            content = self._downloader.get_bytes(url, MAX_DESCRIPTOR_BYTES)
        except DownloadError as exc:
            raise PlanError(FAILED, f"the data package {url} cannot be read: {exc}") from exc
        try:
            descriptor = json.loads(content)
        except ValueError:
            raise PlanError(INVALID, f"the data package {url} is not JSON") from None
        if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
            raise PlanError(INVALID, f"the data package {url} has no list of resources")
        return descriptor

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
        loads, names = self._loads(spec, descriptor)
        steps = [*loads, self._package_step(dataset, descriptor)]
        steps += [
            {
                "run": "update_resource",
                "parameters": {"resources": name, "metadata": {"path": f"{name}.csv"}},
            }
            for name in names
        ]
        steps += self._outputs(spec, owner_id, dataset, names, revision)
        details: dict[str, Any] = {
            "title": f"{owner_id}/{dataset} revision {revision}",
            REVISION_KEY: revision,
            "pipeline": steps,
        }
        if hooks:
            details["hooks"] = list(hooks)
        return Plan(main_id=main_id, pipelines={main_id: details})

    def _loads(
        self, spec: Mapping[str, Any], descriptor: Mapping[str, Any]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        source = spec["inputs"][0]
        base_url = source["url"]
        mapping = (source.get("parameters") or {}).get("resource-mapping") or {}
        processing = spec.get("processing") or []

        resources = []
        for index, resource in enumerate(descriptor.get("resources") or []):
            if not isinstance(resource, dict):
                raise PlanError(
                    INVALID, f"resource #{index + 1} of the data package is not an object"
                )
            name, path = resource.get("name"), resource.get("path")
            if not isinstance(path, str) or not path:
                what = name or f"#{index + 1}"
                raise PlanError(
                    INVALID, f"resource {what}: only resources with one path can be loaded"
                )
            try:
                if not isinstance(name, str) or not name:
                    name = posixpath.splitext(posixpath.basename(urlsplit(path).path))[0].lower()
                url = mapping.get(name) or mapping.get(path) or urljoin(base_url, path)
            except ValueError:
                raise PlanError(
                    INVALID, f"resource #{index + 1}: {path!r} is not a URL or path"
                ) from None
            problem = self.policy.problem(url)
            if problem:
                raise PlanError(INVALID, f"resource {name}: {problem}")
            resources.append((name, path, url, resource))
        if not resources:
            raise PlanError(INVALID, "the data package has no resources")

        known = {name for name, *_ in resources} | {path for _, path, *_ in resources}
        for index, step in enumerate(processing):
            if step["input"] not in known:
                missing = step["input"]
                raise PlanError(
                    INVALID,
                    f"processing[{index}].input: the data package has no resource {missing!r}",
                )

        loads, names = [], []
        for name, path, url, resource in resources:
            steps = [step for step in processing if step["input"] in (name, path)]
            variants = [(step["output"], step["tabulator"]) for step in steps] or [(name, {})]
            for output, options in variants:
                if not RESOURCE_NAME.match(output):
                    raise PlanError(
                        INVALID,
                        f"resource {output!r}: names are lower-case letters, digits, '.', '_', '-'",
                    )
                if output in names:
                    raise PlanError(INVALID, f"resource {output!r}: two resources have this name")
                names.append(output)
                parameters: dict[str, Any] = {"from": url, "name": output}
                if resource.get("format") and "format" not in options:
                    parameters["format"] = resource["format"]
                if resource.get("encoding") and "encoding" not in options:
                    parameters["encoding"] = resource["encoding"]
                parameters.update(options)
                loads.append({"run": "load", "parameters": parameters})
        return loads, names

    @staticmethod
    def _package_step(dataset: str, descriptor: Mapping[str, Any]) -> dict[str, Any]:
        metadata = {key: descriptor[key] for key in PACKAGE_METADATA if key in descriptor}
        metadata["name"] = dataset.lower()
        metadata.setdefault("title", dataset)
        return {"run": "update_package", "parameters": metadata}

    def _outputs(
        self,
        spec: Mapping[str, Any],
        owner_id: str,
        dataset: str,
        names: list[str],
        revision: int,
    ) -> list[dict[str, Any]]:
        layout = self.layout
        tables = {name: {"resource-name": name} for name in names}
        reserved = {PROCESSED_PACKAGE_DIR, NPM_DIR, layout.sqlite_file(owner_id, dataset).name}
        # The npm output comes last: if publishing fails, every other output is complete.
        last: list[dict[str, Any]] = []
        steps: list[dict[str, Any]] = [
            {
                "run": "dump_to_path",
                "parameters": {"out-path": str(layout.processed_package(owner_id, dataset))},
            }
        ]
        for index, output in enumerate(spec.get("outputs") or []):
            kind, parameters = output["kind"], output.get("parameters") or {}
            if kind == "sqlite":
                engine = f"sqlite:///{layout.sqlite_file(owner_id, dataset)}"
                steps.append(
                    {"run": "dump_to_sql", "parameters": {"tables": tables, "engine": engine}}
                )
            elif kind == "rdbms":
                engine = f"env://ENGINE_{parameters['engine'].upper()}"
                steps.append(
                    {"run": "dump_to_sql", "parameters": {"tables": tables, "engine": engine}}
                )
            elif kind == "zip":
                name = parameters["out-file"]
                if name in reserved:
                    raise PlanError(
                        INVALID, f"outputs[{index}].parameters.out-file: {name!r} is reserved"
                    )
                path = layout.file(owner_id, dataset, name)
                steps.append({"run": "dump_to_zip", "parameters": {"out-file": str(path)}})
            elif kind == "npm":
                last.append(self._npm_step(spec, owner_id, dataset, revision, parameters))
            else:
                # The schema admits no other kind; a spec stored under an older one might.
                raise PlanError(INVALID, f"outputs[{index}].kind: unknown output kind {kind!r}")
        return steps + last

    def _npm_step(
        self,
        spec: Mapping[str, Any],
        owner_id: str,
        dataset: str,
        revision: int,
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
            "out-path": str(self.layout.dataset_dir(owner_id, dataset) / NPM_DIR),
        }
        if credentials:
            step["credentials"] = credentials.upper()
            published = spec["meta"].get("findability", "published") == "published"
            step["access"] = "public" if published else "restricted"
        return {"run": NPM_PROCESSOR, "parameters": step}
