"""The processing steps' names for what they write (datapackage_pipelines_specstore.steps)."""

from __future__ import annotations

import re

from datapackage_pipelines_specstore.steps import MAX_TABLE_NAME_BYTES, table_name


def test_table_names_are_the_owners_and_the_datasets_and_stay_unique_when_long():
    assert table_name("alice", "gdp", "gdp") == "alice/gdp/gdp"
    owner = "0c0d7a1b2c3d4e5f60718293a4b5c6d7"  # a user id as the auth service makes them
    long_ones = {table_name(owner, f"dataset-{index}-" + "x" * 60, "r") for index in range(50)}
    assert len(long_ones) == 50
    for name in long_ones:
        assert len(name.encode()) <= MAX_TABLE_NAME_BYTES
        assert name.startswith(owner + "/") and re.search(r"~[0-9a-f]{16}$", name)
    # A short name never holds "~": no long name can be another's short one.
    assert "~" not in table_name("a", "b", "c-d_e.f")
