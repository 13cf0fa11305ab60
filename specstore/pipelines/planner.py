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
   its URL), as :mod:`.resources` plans them, each table given a safe file name;
3. ``update_package``: the package's name (every other property of the input
   descriptor is applied by ``specstore.package``);
4. the outputs, all into the staging folder (:mod:`.outputs`): the processed data
   package as files (``dump_to_path``, completed by ``specstore.package`` with the files,
   a README.md and the zips), ``sqlite`` and ``rdbms`` (``specstore.dump_to_sql``), then
   ``npm``;
5. ``specstore.publish``: the staged outputs swapped into the dataset folder.

A plan has the same few steps however many resources the data package has, and at most
``max_resources`` of them; both engines run them as one flow in one process (DPP as the one
processor ``specstore.flow``: ``datapackage_pipelines_specstore.generator``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datapackage_pipelines_specstore.fetch import FetchError, Limits, fetch_bytes, url_problem

from ..events import FAILED, INVALID
from ..schedules import MAX_SCHEDULE_SECONDS, describe, schedule_seconds
from ..store.records import pipeline_id
from ..validation import storable
from .layout import OutputLayout, Plan, PlanError
from .outputs import Outputs, metadata
from .resources import Resource, given_descriptor, plan_resources

MAX_DESCRIPTOR_BYTES = 16 * 1024 * 1024
DESCRIPTOR_TIMEOUT_SECONDS = 10.0
# The key in a pipeline's definition that says which revision it was planned from.
REVISION_KEY = "specstore-revision"
# The key in a main pipeline's definition that holds the digest of what it was planned
# from (:func:`inputs_digest`).
INPUTS_KEY = "specstore-inputs"
# Part of that digest: a release that plans the same spec otherwise changes it, so that
# each dataset's next scheduled revision runs rather than finding its sources unchanged.
PLAN_FORMAT = 1


def inputs_digest(spec: Mapping[str, Any], descriptor: Mapping[str, Any]) -> str:
    """What a revision is planned from, as one SHA-256: the spec and the input data
    package's descriptor (canonical JSON), and the plan's format. Two revisions with the
    same digest run the same steps on whatever their sources serve."""
    canonical = json.dumps(
        [PLAN_FORMAT, spec, descriptor],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Checked:
    """A spec as checked at upload: the resources of the data package it carries,
    planned (None: it carries none, and its data package is fetched when it is planned)."""

    resources: list[Resource] | None = None


class Planner:
    def __init__(
        self,
        layout: OutputLayout,
        outputs: Outputs,
        limits: Limits,
        schedule_min_interval: float = 0.0,
        max_resources: int = 1000,
    ) -> None:
        self.layout = layout
        self.outputs = outputs
        self.limits = limits
        self.schedule_min_interval = schedule_min_interval
        self.max_resources = max_resources

    @property
    def run_timeout(self) -> float | None:
        return self.outputs.run_timeout

    # -- at upload: nothing here touches the network ------------------------------------

    def check(self, spec: Mapping[str, Any]) -> Checked:
        """What the schema cannot know, all of it (:class:`PlanError`, INVALID, with every
        problem): inputs this server may not fetch, outputs naming connections or
        credentials it lacks, file names it reserves, schedules it does not run, and,
        when the spec carries its data package, whatever keeps that from being planned.
        The resources it carries, planned once."""
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
        found += self.outputs.problems(spec)
        found += self._schedule_problems(spec)
        if found:
            raise PlanError(INVALID, *found)
        descriptor = given_descriptor(spec)
        if descriptor is None:
            return Checked()
        resources = plan_resources(spec, descriptor, self.limits, self.max_resources)
        found = self.outputs.name_problems(spec["meta"]["dataset"], resources)
        if found:
            raise PlanError(INVALID, *found)
        return Checked(resources)

    def _schedule_problems(self, spec: Mapping[str, Any]) -> list[str]:
        seconds = schedule_seconds(spec.get("schedule"))
        if seconds is None:
            return []
        if seconds < self.schedule_min_interval:
            return [
                f"schedule: {spec['schedule']!r} is more often than this server runs datasets: "
                f"{describe(self.schedule_min_interval)} at most (SCHEDULE_MIN_INTERVAL)"
            ]
        if seconds > MAX_SCHEDULE_SECONDS:
            return [
                f"schedule: {spec['schedule']!r} is longer than {describe(MAX_SCHEDULE_SECONDS)}"
            ]
        return []

    # -- the input ---------------------------------------------------------------

    def descriptor(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The input data package's descriptor: the one the spec carries, else fetched
        from its URL (under the fetch policy, within DOWNLOAD_MAX_BYTES)."""
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

    def resources(self, spec: Mapping[str, Any], descriptor: Mapping[str, Any]) -> list[Resource]:
        """Every resource of the input as it will be planned (:class:`PlanError` when one
        cannot be)."""
        resources = plan_resources(spec, descriptor, self.limits, self.max_resources)
        found = self.outputs.name_problems(spec["meta"]["dataset"], resources)
        if found:
            raise PlanError(INVALID, *found)
        return resources

    # -- the plan ----------------------------------------------------------------

    def plan(
        self,
        spec: Mapping[str, Any],
        revision: int,
        descriptor: Mapping[str, Any],
        hooks: list[str] | None = None,
        resources: list[Resource] | None = None,
    ) -> Plan:
        """The revision's pipelines (its ``resources`` as checked at upload, or planned
        now from ``descriptor``), and the files their steps read."""
        meta = spec["meta"]
        owner_id, dataset = meta["ownerid"], meta["dataset"]
        main_id = pipeline_id(owner_id, dataset)
        paths = self.layout.revision_paths(owner_id, dataset, revision)
        staging = paths.staging
        if resources is None:
            resources = self.resources(spec, descriptor)
        run_limit = {"run-timeout": self.run_timeout} if self.run_timeout else {}
        steps: list[dict[str, Any]] = [
            {
                "run": "specstore.stage",
                # The revision makes every revision's pipeline new to DPP (its cache_hash).
                "parameters": {"staging": str(staging), "revision": revision, **run_limit},
            }
        ]
        loaded = [_loaded(resource) for resource in resources if resource.url is not None]
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
        steps += self.outputs.steps(spec, owner_id, dataset, revision, paths, resources)
        details: dict[str, Any] = {
            "title": f"{owner_id}/{dataset} revision {revision}",
            REVISION_KEY: revision,
            INPUTS_KEY: inputs_digest(spec, descriptor),
            "pipeline": steps,
        }
        if hooks:
            details["hooks"] = list(hooks)
        attached = metadata(dataset, descriptor, resources)
        return Plan(main_id, {main_id: details}, {str(paths.metadata): attached})

    def attachments_whole(self, owner_id: str, dataset: str, revision: int) -> bool:
        """Whether the files the revision's plan attached (its metadata) read, whole."""
        try:
            path = self.layout.revision_paths(owner_id, dataset, revision).metadata
            json.loads(path.read_bytes())
        except (PlanError, OSError, ValueError):
            return False
        return True


def _loaded(resource: Resource) -> dict[str, Any]:
    """What ``specstore.load`` is told of a resource (inline data is not loaded)."""
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
    return parameters
