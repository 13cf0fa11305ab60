"""The pipeline files written for DPP (specstore.pipelines.dpp.files and .writer): one
per dataset, which DPP reads with PyYAML and hands to specstore's plugin, so whatever the
JSON form holds must read back through PyYAML unchanged."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import yaml
from datapackage_pipelines_specstore import Generator
from hypothesis import given, settings
from hypothesis import strategies as st

from specstore.pipelines.dpp import DATASET_FILE, DppPipelines, writer
from specstore.pipelines.dpp.writer import LONG_KEY
from specstore.pipelines.planner import REVISION_KEY

# Any character, and those YAML reads otherwise than JSON (DEL, U+0085, U+2028, U+2029)
# often enough to meet them.
characters = st.characters(codec="utf-8") | st.sampled_from("\x7f\x85\u2028\u2029\ufeff")
scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(characters)
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(characters), children, max_size=4)
    ),
    max_leaves=12,
)
pipeline_sets = st.dictionaries(
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    st.dictionaries(st.text(characters, max_size=12), documents, max_size=4),
    min_size=1,
    max_size=4,
)


def as_dpp_reads_it(root, owner="alice", dataset="gdp") -> dict:
    """The dataset's file as DPP reads it (PyYAML), then as specstore's plugin yields it."""
    source = yaml.safe_load((root / owner / dataset / DATASET_FILE).read_text())
    generator = Generator()
    assert generator.internal_validate(source)
    generated = dict(generator.internal_generate(source, f"./{owner}/{dataset}"))
    return {pipeline_id: _steps_again(details) for pipeline_id, details in generated.items()}


def _steps_again(details: dict) -> dict:
    """A pipeline as the generator gave it, its one ``specstore.flow`` step the steps."""
    steps = details.get("pipeline")
    if isinstance(steps, list) and steps and steps[0].get("run") == "specstore.flow":
        assert len(steps) == 1
        return {**details, "pipeline": steps[0]["parameters"]["steps"]}
    return details


def test_dpp_runs_a_plan_as_one_processor_of_its_steps():
    details = {"title": "alice/gdp revision 2", REVISION_KEY: 2, "hooks": ["h"]}
    steps = [{"run": "specstore.stage", "parameters": {"staging": "s"}}, {"run": "update_package"}]
    source = {"pipelines": {"alice/gdp": {**details, "pipeline": steps}, "alice/x": {"a": 1}}}
    assert Generator().internal_generate(source, "./alice/gdp") == [
        (
            "./alice/gdp",
            {**details, "pipeline": [{"run": "specstore.flow", "parameters": {"steps": steps}}]},
        ),
        ("./alice/x", {"a": 1}),
    ]


def versioned(pipelines: dict, revision: int, owner="alice", dataset="gdp") -> dict:
    """``pipelines`` (by suffix: "" for the main one) as one revision of the dataset plans them."""
    return {
        f"{owner}/{dataset}{suffix}": {**value, REVISION_KEY: revision}
        for suffix, value in pipelines.items()
    }


@settings(max_examples=300, deadline=None)
@given(pipeline_sets)
def test_whatever_a_dataset_file_holds_reads_back_the_same_through_pyyaml(tmp_path_factory, sets):
    root = tmp_path_factory.mktemp("dpp")
    pipelines = versioned({f":{key}": value for key, value in sets.items()}, 1)
    DppPipelines(root).write("alice", "gdp", pipelines)
    assert as_dpp_reads_it(root) == {f"./{key}": value for key, value in pipelines.items()}


def test_ordinary_pipelines_are_written_as_json(tmp_path):
    # A hook URL's credential may hold a digit before an "e": a string, not a number.
    hook = "http://specstore/source/update?token=Qx9eK2E7e_1e"
    parameters = {"n": 1.5, "hooks": [hook], "e": 10, "list": [1, 2.5e-7]}
    pipelines = versioned({"": {"pipeline": [{"run": "load", "parameters": parameters}]}}, 1)
    with mock.patch.object(writer, "load_yaml", wraps=writer.load_yaml) as loaded:
        DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    text = (tmp_path / "alice" / "gdp" / DATASET_FILE).read_text()
    assert json.loads(text) == yaml.safe_load(text) == {"pipelines": pipelines}
    # 2.5e-07 is one: PyYAML reads the text once to check it reads as JSON does.
    assert loaded.call_count == 1
    del parameters["list"]
    DppPipelines(tmp_path).write("alice", "gdp", versioned({"": {"p": parameters}}, 2))
    assert loaded.call_count == 1  # nothing to check


def test_values_yaml_would_read_differently_make_the_file_yaml(tmp_path):
    # JSON writes 1e+20 without a dot, which YAML 1.1 reads as a string.
    pipelines = versioned({"": {"limit": 1e20}}, 1)
    DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    text = (tmp_path / "alice" / "gdp" / DATASET_FILE).read_text()
    assert not text.startswith("{")
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": pipelines["alice/gdp"]}
    # And it is read back by specstore: the next revision replaces it.
    DppPipelines(tmp_path).write("alice", "gdp", versioned({"": {"limit": 5}}, 2))
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": {"limit": 5, REVISION_KEY: 2}}


@pytest.mark.parametrize("number", [1.5e20, -2.5e-7, 1e300, float("inf"), float("-inf")])
def test_numbers_read_back_as_they_are_whatever_their_written_form(tmp_path, number):
    # orjson writes 1.5e20 (YAML 1.1 wants 1.5e+20) and an infinity as null: neither may
    # reach DPP as anything but the number.
    pipelines = versioned({"": {"limit": number, "list": [1, number]}}, 1)
    DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": pipelines["alice/gdp"]}
    assert DppPipelines(tmp_path).revision("alice", "gdp") == 1


def test_integers_past_64_bits_are_written_exactly(tmp_path):
    pipelines = versioned({"": {"limit": 2**70, "list": [-(2**65)]}}, 1)
    DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    text = (tmp_path / "alice" / "gdp" / DATASET_FILE).read_text()
    assert str(2**70) in text
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": pipelines["alice/gdp"]}


@pytest.mark.parametrize(
    "value",
    [
        "delete \x7f",  # ASCII, and not printable for YAML
        "next line \x85 and é",  # not ASCII, and YAML reads U+0085 as a line break
        "line \u2028 separator",  # printable for YAML, and read as a line break too
        "paragraph \u2029 separator",
        "bell \x07",  # JSON escapes it: still JSON
    ],
)
def test_characters_yaml_may_not_hold_read_back_the_same(tmp_path, value):
    pipelines = versioned({"": {"title": value}}, 1)
    DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": pipelines["alice/gdp"]}
    text = (tmp_path / "alice" / "gdp" / DATASET_FILE).read_text()
    assert text.startswith("{") == (value == "bell \x07")


@pytest.mark.parametrize(
    "key",
    [
        "k" * (LONG_KEY - 1),
        "k" * LONG_KEY,
        "k" * 1100,  # past PyYAML's 1,024 characters for a simple key
        'a "quoted" word ' * 80,  # escaped quotes cut it into short runs
        "back\\slash \n" * 100,
    ],
)
def test_long_keys_read_back_the_same_through_pyyaml(tmp_path, key):
    pipelines = versioned({"": {"pipeline": [{"parameters": {key: key}}], key: 1}}, 1)
    DppPipelines(tmp_path).write("alice", "gdp", pipelines)
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": pipelines["alice/gdp"]}
    text = (tmp_path / "alice" / "gdp" / DATASET_FILE).read_text()
    if len(key) < LONG_KEY:
        assert text.startswith("{")  # no key that long: JSON, never parsed as YAML to check


def test_each_dataset_has_a_file_of_its_own(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", "gdp", versioned({"": {"pipeline": ["a"]}}, 1))
    other = tmp_path / "alice" / "cpi" / DATASET_FILE
    files.write("alice", "cpi", versioned({"": {"pipeline": ["b"]}}, 1, dataset="cpi"))
    before = other.read_bytes()
    files.write("alice", "gdp", versioned({"": {"pipeline": ["c"]}}, 2))
    assert other.read_bytes() == before
    assert files.read("alice") == {
        "gdp": {"pipeline": ["c"], REVISION_KEY: 2},
        "cpi": {"pipeline": ["b"], REVISION_KEY: 1},
    }


def test_a_revision_replaces_all_of_its_datasets_pipelines(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", "gdp", versioned({"": {"pipeline": []}, ":sheet-1": {}}, 1))
    files.write("alice", "gdp", versioned({"": {"pipeline": []}}, 2))
    assert as_dpp_reads_it(tmp_path) == {"./alice/gdp": {"pipeline": [], REVISION_KEY: 2}}


def test_an_older_revision_never_replaces_a_newer_one(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", "gdp", versioned({"": {"pipeline": ["new"]}}, 3))
    older = files.write("alice", "gdp", versioned({"": {"pipeline": ["old"]}}, 2))
    assert older.newer == {"alice/gdp": 3} and not older.wrote
    assert files.read("alice") == {"gdp": {"pipeline": ["new"], REVISION_KEY: 3}}


def test_a_taken_back_write_leaves_the_folder_as_it_was(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", "gdp", versioned({"": {"pipeline": [1]}}, 1))
    path = tmp_path / "alice" / "gdp" / DATASET_FILE
    before = path.read_bytes()
    files.take_back(files.write("alice", "gdp", versioned({"": {"pipeline": ["x"]}}, 2)))
    assert path.read_bytes() == before
    files.take_back(files.write("alice", "new", versioned({"": {}}, 1, dataset="new")))
    assert not (tmp_path / "alice" / "new" / DATASET_FILE).exists()
    assert files.read("alice") == {"gdp": {"pipeline": [1], REVISION_KEY: 1}}


def test_a_take_back_leaves_a_newer_write_alone(tmp_path):
    files = DppPipelines(tmp_path)
    first = files.write("alice", "gdp", versioned({"": {"pipeline": [1]}}, 1))
    files.write("alice", "gdp", versioned({"": {"pipeline": [2]}}, 2))
    files.take_back(first)
    assert files.read("alice") == {"gdp": {"pipeline": [2], REVISION_KEY: 2}}


def test_names_starting_with_a_dot_get_folders_dpp_does_not_skip(tmp_path):
    files = DppPipelines(tmp_path)
    files.write(".team", ".hidden", versioned({"": {}}, 1, owner=".team", dataset=".hidden"))
    assert (tmp_path / "%2Eteam" / "%2Ehidden" / DATASET_FILE).is_file()
    assert files.read(".team") == {".hidden": {REVISION_KEY: 1}}
    # Whatever a name holds, its folder is one level down.
    assert files.dataset_dir("alice", "..").parent == tmp_path / "alice"
    for owner, dataset in (("alice", "a/b"), ("a/b", "gdp"), ("alice", "/etc")):
        with pytest.raises(ValueError):
            files.dataset_dir(owner, dataset)
