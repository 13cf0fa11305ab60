"""A plan's outputs: what the spec's ``outputs`` may name on this server (connections,
credentials, file names), the steps that write them into the run's staging folder, and
what the package step adds to the data package.

Database connections are referred to as ``env://ENGINE_<NAME>`` and npm credentials by
name, so that no connection string or token is ever written into a plan; every table
an ``rdbms`` output writes is the owner's and the dataset's own,
``<ownerid>/<dataset>/<resource>`` (see ``steps.table_name``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from datapackage_pipelines_specstore import npm
from datapackage_pipelines_specstore.publication import derived_names
from datapackage_pipelines_specstore.steps import PACKAGE_DIR, table_name

from ..events import INVALID
from .layout import PlanError, RevisionPaths
from .resources import Resource

if TYPE_CHECKING:
    from ..config import NpmRegistry

NPM_DIR = "npm"
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


class Outputs:
    def __init__(
        self,
        engine_url: Callable[[str], str | None],
        engine_open_to: Callable[[str, str], bool] = lambda name, owner_id: True,
        npm_registry: Callable[[str], NpmRegistry | None] = lambda name: None,
        run_timeout: float | None = None,
        storage: Mapping[str, Any] | None = None,
        preview_rows: int = 2000,
    ) -> None:
        self.run_timeout = run_timeout
        # Where runs publish (see datapackage_pipelines_specstore.storage; None: nowhere).
        self.storage = dict(storage) if storage else None
        self.preview_rows = preview_rows
        self._engine_url = engine_url
        self._engine_open_to = engine_open_to
        self._npm_registry = npm_registry

    def problems(self, spec: Mapping[str, Any]) -> list[str]:
        """What the spec's outputs name that this server does not have or reserves."""
        return self._output_problems(spec) + self._npm_problems(spec)

    def name_problems(self, dataset: str, resources: list[Resource]) -> list[str]:
        """Resources named as the publication names what it derives (``x_csv`` beside
        ``x``, ``validation_report``, ``<dataset>_zip``)."""
        if self.storage is None:
            return []
        derived = derived_names([r.name for r in resources if r.table], dataset)
        return [
            f"resource {resource.name}: the name is taken by {derived[resource.name]} in the "
            f"published package: rename the resource"
            for resource in resources
            if resource.name in derived
        ]

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

    def steps(
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
        publish: dict[str, Any] = {
            "staging": str(staging),
            "target": str(paths.folder),
            "revision": revision,
        }
        if self.run_timeout:
            publish["run-timeout"] = self.run_timeout
        published: list[dict[str, Any]] = []
        derive: list[dict[str, Any]] = []
        if self.storage is not None:
            meta = spec["meta"]
            where = {
                "staging": str(staging),
                "ownerid": owner_id,
                "dataset": dataset,
                "revision": revision,
                "findability": meta.get("findability", "published"),
                "storage": self.storage,
            }
            publish.update(where)
            derive = [
                {
                    "run": "specstore.derive",
                    "parameters": {"staging": str(staging), "preview-rows": self.preview_rows},
                }
            ]
            published = [
                {
                    "run": "specstore.publication",
                    "parameters": {
                        **where,
                        "owner": meta.get("owner") or owner_id,
                        "tables": [r.name for r in resources if r.table and r.url is not None],
                        "files": [r.name for r in resources if not r.table and r.url is not None],
                    },
                }
            ]
        # The SQL outputs and the derived files before the package: the run's statistics
        # are the last dumper's, and dump_to_path's (bytes and hash of the package) say
        # more. The
        # publication is stored before npm, and committed with the other outputs.
        return [
            *sql,
            *derive,
            # The rows were cast by the load: dump_to_path does not cast them again.
            {
                "run": "dump_to_path",
                "parameters": {"out-path": str(package), "validator_options": {"field_names": []}},
            },
            {"run": "specstore.package", "parameters": finish},
            *published,
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


def metadata(
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


def _plain_file(folder: Path, name: str) -> Path:
    """``name`` in ``folder`` (a run's staging folder, made new for the run), where
    ``name`` must be one path component: no separator, not ``.`` or ``..``."""
    if name in ("", ".", "..") or PurePosixPath(name).name != name:
        raise PlanError(INVALID, f"the output file name {name!r} is not a plain file name")
    return folder / name
