"""Specs become pipelines (specstore.pipelines.planner): the steps planned, where their
files go, and what cannot be planned."""

from __future__ import annotations

import json

import pytest
from datapackage_pipelines_specstore.fetch import Limits

from specstore.events import INVALID
from specstore.pipelines.layout import OutputLayout, PlanError
from specstore.pipelines.outputs import Outputs
from specstore.pipelines.planner import Planner
from tests.support.pipelines import (
    EXAMPLE_DATA,
    example_spec,
)

BASE = "http://files.test/"


@pytest.fixture
def planned(tmp_path):
    """The example spec with an rdbms output too, planned as revision 3: (the plan, the
    dataset's output folder, the revision's staging folder, the descriptor)."""
    spec = example_spec(BASE)
    spec["outputs"].append({"kind": "rdbms", "parameters": {"engine": "warehouse"}})
    descriptor = json.loads((EXAMPLE_DATA / "datapackage.json").read_text())
    plan = _planner(tmp_path).plan(spec, 3, descriptor, hooks=["http://specstore/hook"])
    out = tmp_path.resolve() / "alice" / "gdp"
    return plan, out, out / ".staging" / "3", descriptor


def _step(plan, run: str, index: int = 0) -> dict:
    return [step for step in plan.main["pipeline"] if step["run"] == run][index]


def test_a_plan_is_one_dpp_pipeline_of_steps_in_order(planned):
    plan, *_ = planned
    assert plan.main_id == "alice/gdp"
    inputs = plan.main["specstore-inputs"]
    assert {key: value for key, value in plan.main.items() if key != "pipeline"} == {
        "title": "alice/gdp revision 3",
        "specstore-revision": 3,
        "specstore-inputs": inputs,
        "hooks": ["http://specstore/hook"],
    }
    assert [step["run"] for step in plan.main["pipeline"]] == [
        "specstore.stage",
        "specstore.load",
        "update_package",
        "specstore.dump_to_sql",
        "specstore.dump_to_sql",
        "dump_to_path",
        "specstore.package",
        "specstore.publish",
    ]
    assert _step(plan, "update_package") == {"run": "update_package", "parameters": {"name": "gdp"}}


def test_the_inputs_digest_names_the_spec_and_the_data_package_not_the_revision(tmp_path):
    """What a scheduled revision compares with its dataset's last run: the same for the
    same spec and data package whatever the revision, different when either differs."""
    spec = example_spec(BASE)
    descriptor = json.loads((EXAMPLE_DATA / "datapackage.json").read_text())
    planner = _planner(tmp_path)

    def digest(spec, descriptor, revision=3):
        return planner.plan(spec, revision, descriptor).main["specstore-inputs"]

    first = digest(spec, descriptor)
    assert len(first) == 64 and int(first, 16) >= 0
    assert digest(json.loads(json.dumps(spec)), dict(reversed(descriptor.items())), 9) == first
    assert digest(spec, {**descriptor, "title": "GDP, revised"}) != first
    headers = [{**spec["processing"][0], "tabulator": {"headers": 3, "sheet": 1}}]
    assert digest({**spec, "processing": headers}, descriptor) != first


def test_one_load_step_fetches_every_resource_within_the_limits(planned):
    plan, _, staging, _ = planned
    assert _step(plan, "specstore.load")["parameters"] == {
        "resources": [
            {"url": BASE + "gdp-2019.csv", "name": "gdp", "format": "csv", "path": "gdp.csv"},
            {
                "url": BASE + "population.xlsx",
                "name": "population",
                "format": "xlsx",
                "path": "population.csv",
                "options": {"headers": 2, "sheet": 1},
            },
        ],
        "staging": str(staging),
        "limits": {
            "allow": [],
            "timeout": 5,
            "max_bytes": 1024 * 1024,
            "max_unpacked_bytes": 1024 * 1024 * 1024,
            "allow_networks": [],
            "ports": [],
            "retries": 3,
            "backoff": 1.0,
        },
        "run-timeout": 60,
    }


def test_database_outputs_write_tables_and_shared_ones_the_owners_own(planned):
    plan, _, staging, _ = planned
    assert _step(plan, "specstore.dump_to_sql", 0)["parameters"] == {
        "tables": {"gdp": {"resource-name": "gdp"}, "population": {"resource-name": "population"}},
        "engine": f"sqlite:///{staging / 'gdp.sqlite'}",
    }
    # In a database other owners write into, the tables are the owner's and dataset's own.
    assert _step(plan, "specstore.dump_to_sql", 1)["parameters"] == {
        "tables": {
            "alice/gdp/gdp": {"resource-name": "gdp"},
            "alice/gdp/population": {"resource-name": "population"},
        },
        "engine": "env://ENGINE_WAREHOUSE",
    }


def test_a_revision_is_staged_then_packaged_then_published_whole(planned):
    plan, out, staging, _ = planned
    assert _step(plan, "specstore.stage")["parameters"] == {
        "staging": str(staging),
        "revision": 3,
        "run-timeout": 60,
    }
    assert _step(plan, "dump_to_path")["parameters"] == {
        "out-path": str(staging / "datapackage"),
        # The load cast the rows: the dump does not cast them again.
        "validator_options": {"field_names": []},
    }
    assert _step(plan, "specstore.package")["parameters"] == {
        "path": str(staging / "datapackage"),
        "metadata": str(out / ".plans" / "3.json"),
        "zips": [str(staging / "gdp.zip")],
    }
    assert _step(plan, "specstore.publish")["parameters"] == {
        "staging": str(staging),
        "target": str(out),
        "revision": 3,
        "run-timeout": 60,
    }


def test_what_is_too_large_for_a_steps_parameters_rides_in_a_file(planned):
    """DPP passes a step's parameters on a command line: every property of the descriptor
    goes to specstore.package in a file beside the outputs instead."""
    plan, out, _, descriptor = planned
    assert plan.attachments == {
        str(out / ".plans" / "3.json"): {
            "package": {
                "title": "GDP and population of three countries",
                "description": descriptor["description"],
                "licenses": descriptor["licenses"],
            },
            "tables": {"gdp": {}, "population": {}},
            "files": [],
            "inline": [],
        }
    }


def test_one_input_can_feed_several_outputs_and_the_rest_load_as_they_are(tmp_path):
    spec = example_spec("http://files.test/")
    spec["processing"] = [
        {"input": "population.xlsx", "output": "sheet-one", "tabulator": {"sheet": 1}},
        {"input": "population", "output": "sheet-two", "tabulator": {"sheet": 2, "headers": 1}},
    ]
    descriptor = json.loads((EXAMPLE_DATA / "datapackage.json").read_text())
    loads = next(
        step["parameters"]["resources"]
        for step in _planner(tmp_path).plan(spec, 1, descriptor).main["pipeline"]
        if step["run"] == "specstore.load"
    )
    assert [(load["name"], load.get("options", {}).get("sheet")) for load in loads] == [
        ("gdp", None),
        ("sheet-one", 1),
        ("sheet-two", 2),
    ]


@pytest.mark.parametrize(
    ("descriptor", "processing", "message"),
    [
        (
            {"resources": [{"name": "a", "path": ["x.csv", "y.csv"]}]},
            [],
            "resource a: only resources with one",
        ),
        ({"resources": [{"name": "A b", "path": "x.csv"}]}, [], "resource 'A b': names are"),
        (
            {"resources": [{"name": "a", "path": "file:///etc/passwd"}]},
            [],
            "resource a: only http and https URLs can be fetched",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "b", "output": "c", "tabulator": {}}],
            "processing[0].input: the data package has no resource 'b'",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}, {"name": "b", "path": "b.csv"}]},
            [{"input": "a", "output": "b", "tabulator": {}}],
            "resource 'b': two resources have this name",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "a", "output": "a", "tabulator": {"format": "datapackage"}}],
            "resource 'a': 'datapackage' is not a table format",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv"}]},
            [{"input": "a", "output": "a", "tabulator": {"format": "sql"}}],
            "resource 'a': 'sql' is not a table format",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv", "schema": {"fields": "year"}}]},
            [],
            "resource 'a': its schema is not a Table Schema",
        ),
        (
            {"resources": [{"name": "a", "path": "a.csv", "schema": {"fields": [{"type": "x"}]}}]},
            [],
            "resource 'a': its schema is not a valid Table Schema",
        ),
        (
            {
                "resources": [
                    {"name": "a", "path": "a.csv"},
                    {"name": "b", "path": "a.csv", "format": "pdf"},
                ]
            },
            [],
            "resource 'b': two files would be 'a.csv'",
        ),
        (
            {"resources": [{"name": "d", "path": "DataPackage.json"}]},
            [],
            "resource 'd': two files would be 'DataPackage.json'",
        ),
    ],
)
def test_specs_that_cannot_become_pipelines_are_invalid(tmp_path, descriptor, processing, message):
    spec = example_spec("http://files.test/")
    spec["inputs"][0]["parameters"] = {}
    spec["processing"] = processing
    with pytest.raises(PlanError) as raised:
        _planner(tmp_path).plan(spec, 1, descriptor)
    assert raised.value.state == INVALID
    assert raised.value.messages[0].startswith(message), raised.value.messages


@pytest.mark.parametrize("schema", [{}, None])
def test_an_empty_or_null_schema_is_no_schema_and_the_types_are_inferred(tmp_path, schema):
    """The DataHub client's own test package (dp-remote-resource) says ``"schema": {}``."""
    spec = example_spec("http://files.test/")
    spec["inputs"][0]["parameters"] = {}
    spec["processing"] = []
    descriptor = {"resources": [{"name": "a", "path": "a.csv", "schema": schema}]}
    plan = _planner(tmp_path).plan(spec, 1, descriptor)
    (load,) = [step for step in plan.main["pipeline"] if step["run"] == "specstore.load"]
    (resource,) = load["parameters"]["resources"]
    assert resource["name"] == "a" and not resource.get("schema")


def test_output_paths_stay_inside_the_output_folder(tmp_path):
    layout = OutputLayout(tmp_path)
    refused = [("..", ".."), ("alice", "../../x"), ("/etc", "x"), ("alice", "."), ("", "x")]
    refused += [("alice", "a\\b"), ("alice", "nul\0")]
    for owner, dataset in refused:
        with pytest.raises(PlanError):
            layout.dataset_dir(owner, dataset)
    assert layout.staging("alice", "gdp", 2) == tmp_path.resolve() / "alice/gdp/.staging/2"


@pytest.mark.parametrize(
    ("path", "planned"),
    [
        ("docs/report.pdf", "docs/report.pdf"),
        ("Annual Report (2019).pdf", "Annual Report (2019).pdf"),
        ("../../../etc/report.pdf", "report.pdf"),
        ("/etc/passwd", "report.pdf"),
        ("http://elsewhere.test/x/report.pdf", "report.pdf"),
        ("a\\..\\b.pdf", "report.pdf"),
        (".hidden/report.pdf", "report.pdf"),
        ("a/%2e%2e/report.pdf", "report.pdf"),
    ],
)
def test_files_keep_their_path_only_when_it_is_plain(tmp_path, path, planned):
    spec = example_spec("http://files.test/")
    spec["processing"] = []
    descriptor = {"resources": [{"name": "report", "path": path, "format": "pdf"}]}
    plan = _planner(tmp_path).plan(spec, 1, descriptor).main["pipeline"]
    load = next(step["parameters"] for step in plan if step["run"] == "specstore.load")
    assert load["resources"][0]["file"] == planned
    metadata = next(iter(_planner(tmp_path).plan(spec, 1, descriptor).attachments.values()))
    assert metadata["files"] == [{"name": "report", "format": "pdf", "path": planned}]


def _planner(tmp_path, engines=None):
    engines = engines or {}
    limits = Limits(timeout=5, max_bytes=1024 * 1024)
    outputs = Outputs(lambda name: engines.get(name.upper()), run_timeout=60)
    return Planner(OutputLayout(tmp_path), outputs, limits)
