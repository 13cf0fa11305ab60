"""The pipeline-spec.yaml files written for DPP: DPP reads them with PyYAML, so
whatever the fast JSON form holds must read back through PyYAML unchanged."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from specstore.pipelines import dpp
from specstore.pipelines.dpp import JSON_MARK, SPEC_FILE, DppPipelines, render
from specstore.pipelines.planner import REVISION_KEY

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(codec="utf-8"))
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), children, max_size=4)
    ),
    max_leaves=12,
)
pipeline_sets = st.dictionaries(
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=12), documents, max_size=4),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(pipeline_sets)
def test_whatever_is_written_reads_back_the_same_through_pyyaml(pipelines):
    text = render(pipelines)
    assert yaml.safe_load(text) == pipelines


def test_ordinary_pipelines_are_written_as_json_one_per_line():
    pipelines = {
        "gdp": {"pipeline": [{"run": "load", "parameters": {"from": "http://x/y.csv"}}]},
        "pop": {"pipeline": [], REVISION_KEY: 2, "title": "Population — ünïcode 🙂"},
    }
    text = render(pipelines)
    assert text.startswith(JSON_MARK)
    assert text.splitlines()[1:3] == [
        '"gdp": ' + json.dumps(pipelines["gdp"], sort_keys=True) + ",",
        '"pop": ' + json.dumps(pipelines["pop"], ensure_ascii=False, sort_keys=True),
    ]
    assert json.loads(text) == pipelines == yaml.safe_load(text)


def test_values_yaml_would_read_differently_make_the_whole_file_yaml():
    # JSON writes 1e+20 without a dot, which YAML 1.1 reads as a string.
    pipelines = {"big": {"limit": 1e20}, "plain": {"pipeline": []}}
    text = render(pipelines)
    assert not text.startswith(JSON_MARK)
    assert yaml.safe_load(text) == pipelines


@pytest.mark.parametrize(
    "key",
    [
        "k" * (dpp.LONG_KEY - 1),
        "k" * dpp.LONG_KEY,
        "k" * 1100,  # past PyYAML's 1,024 characters for a simple key
        'a "quoted" word ' * 80,  # escaped quotes cut it into short runs
        "back\\slash \n" * 100,
    ],
)
def test_long_keys_read_back_the_same_through_pyyaml(key):
    pipelines = {"long": {"pipeline": [{"parameters": {key: key}}], key: 1}, "plain": {}}
    text = render(pipelines)
    assert yaml.safe_load(text) == pipelines
    if len(key) < dpp.LONG_KEY:
        assert text.startswith(JSON_MARK)


def test_an_owners_file_goes_from_yaml_back_to_json_once_the_risky_pipeline_is_gone(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", {"alice/big": {"limit": 1e20, REVISION_KEY: 1}})
    path = tmp_path / "alice" / SPEC_FILE
    assert not path.read_text().startswith(JSON_MARK)

    # Another dataset: the file still holds the risky value, so it stays YAML.
    files.write("alice", {"alice/other": {"pipeline": [], REVISION_KEY: 1}})
    assert not path.read_text().startswith(JSON_MARK)
    assert yaml.safe_load(path.read_text()) == {
        "big": {"limit": 1e20, REVISION_KEY: 1},
        "other": {"pipeline": [], REVISION_KEY: 1},
    }

    # The risky dataset's next revision no longer has it: back to JSON, all of it readable.
    files.write("alice", {"alice/big": {"limit": 5, REVISION_KEY: 2}})
    text = path.read_text()
    assert text.startswith(JSON_MARK)
    assert yaml.safe_load(text) == json.loads(text) == files.read("alice")
    assert files.read("alice")["big"] == {"limit": 5, REVISION_KEY: 2}


def test_an_older_revision_never_replaces_a_newer_one(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", {"alice/gdp": {"pipeline": ["new"], REVISION_KEY: 3}})
    files.write("alice", {"alice/gdp": {"pipeline": ["old"], REVISION_KEY: 2}})
    assert files.read("alice") == {"gdp": {"pipeline": ["new"], REVISION_KEY: 3}}


def test_a_file_written_by_hand_in_yaml_is_read_and_kept(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / SPEC_FILE).write_text("manual:\n  pipeline:\n  - run: noop\n")
    files = DppPipelines(tmp_path)
    files.write("alice", {"alice/gdp": {"pipeline": [], REVISION_KEY: 1}})
    written = yaml.safe_load((tmp_path / "alice" / SPEC_FILE).read_text())
    assert written == {
        "manual": {"pipeline": [{"run": "noop"}]},
        "gdp": {"pipeline": [], REVISION_KEY: 1},
    }


def test_a_write_keeps_every_other_pipeline_line_as_it_was(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", {f"alice/ds-{i}": {"pipeline": [i], REVISION_KEY: 1} for i in range(50)})
    path = tmp_path / "alice" / SPEC_FILE
    before = path.read_text().splitlines()
    files.write("alice", {"alice/ds-7": {"pipeline": ["new"], REVISION_KEY: 2}})
    after = path.read_text().splitlines()
    changed = [line for line in after if line not in before]
    assert changed == ['"ds-7": {"pipeline": ["new"], "' + REVISION_KEY + '": 2},']
    assert len(after) == len(before)
    assert yaml.safe_load(path.read_text()) == files.read("alice")


def test_text_that_only_looks_like_the_json_form_is_parsed_whole(tmp_path):
    (tmp_path / "alice").mkdir()
    # Flow-style YAML starting like the JSON form, but not one pipeline per line.
    (tmp_path / "alice" / SPEC_FILE).write_text('{\nmanual: {pipeline: []},\n"x": {}\n}\n')
    files = DppPipelines(tmp_path)
    files.write("alice", {"alice/gdp": {"pipeline": [], REVISION_KEY: 1}})
    text = (tmp_path / "alice" / SPEC_FILE).read_text()
    assert text.startswith(JSON_MARK)
    assert yaml.safe_load(text) == {
        "manual": {"pipeline": []},
        "x": {},
        "gdp": {"pipeline": [], REVISION_KEY: 1},
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(pipeline_sets, min_size=1, max_size=6))
def test_any_sequence_of_writes_leaves_a_file_pyyaml_reads_as_the_newest_pipelines(
    tmp_path_factory, writes
):
    root = tmp_path_factory.mktemp("writes")
    files = DppPipelines(root)
    expected: dict = {}
    for revision, pipelines in enumerate(writes, start=1):
        versioned = {key: {**value, REVISION_KEY: revision} for key, value in pipelines.items()}
        files.write("alice", {f"alice/{key}": value for key, value in versioned.items()})
        expected.update(versioned)
    assert yaml.safe_load((root / "alice" / SPEC_FILE).read_text()) == expected


def test_a_file_as_specstore_left_it_is_edited_without_parsing_the_other_pipelines(
    tmp_path, monkeypatch
):
    files = DppPipelines(tmp_path)
    files.write("alice", {f"alice/ds-{i}": {"pipeline": [i], REVISION_KEY: 1} for i in range(50)})

    def parsed_whole(*_args):
        raise AssertionError("the owner's file was parsed whole")

    monkeypatch.setattr(dpp, "_json_lines", parsed_whole)
    monkeypatch.setattr(dpp, "parse", parsed_whole)
    files.write("alice", {"alice/ds-7": {"pipeline": ["new"], REVISION_KEY: 2}})
    files.write("alice", {"alice/ds-07": {"pipeline": ["between"], REVISION_KEY: 1}})
    files.write("alice", {"alice/zz": {"pipeline": ["last"], REVISION_KEY: 1}})
    older = files.write("alice", {"alice/ds-7": {"pipeline": ["old"], REVISION_KEY: 1}})
    assert older.newer == {"alice/ds-7": 2} and not older.previous
    monkeypatch.undo()

    text = (tmp_path / "alice" / SPEC_FILE).read_text()
    expected = {f"ds-{i}": {"pipeline": [i], REVISION_KEY: 1} for i in range(50)}
    expected["ds-7"] = {"pipeline": ["new"], REVISION_KEY: 2}
    expected["ds-07"] = {"pipeline": ["between"], REVISION_KEY: 1}
    expected["zz"] = {"pipeline": ["last"], REVISION_KEY: 1}
    assert json.loads(text) == yaml.safe_load(text) == expected
    # Still sorted by key, one pipeline per line: the form a whole rewrite gives.
    assert text == render(expected)


def test_a_file_edited_by_hand_after_specstore_wrote_it_is_read_whole(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", {"alice/gdp": {"pipeline": [], REVISION_KEY: 1}})
    path = tmp_path / "alice" / SPEC_FILE
    # Flow-style YAML in the JSON form's frame, one pipeline over two lines.
    path.write_text('{\n"gdp": {"pipeline": [],\n"' + REVISION_KEY + '": 1},\n"manual": {}\n}\n')
    files.write("alice", {"alice/gdp": {"pipeline": ["next"], REVISION_KEY: 2}})
    assert yaml.safe_load(path.read_text()) == {
        "gdp": {"pipeline": ["next"], REVISION_KEY: 2},
        "manual": {},
    }


def test_a_taken_back_write_leaves_the_file_as_it_was(tmp_path):
    files = DppPipelines(tmp_path)
    files.write("alice", {f"alice/ds-{i}": {"pipeline": [i], REVISION_KEY: 1} for i in range(5)})
    path = tmp_path / "alice" / SPEC_FILE
    before = path.read_text()
    written = files.write("alice", {"alice/ds-2": {"pipeline": ["x"], REVISION_KEY: 2}})
    files.take_back(written)
    assert path.read_text() == before
    added = files.write("alice", {"alice/new": {"pipeline": [], REVISION_KEY: 1}})
    files.take_back(added)
    assert path.read_text() == before
