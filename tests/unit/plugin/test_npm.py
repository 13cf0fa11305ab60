"""npm package names: one per dataset, never another's."""

from __future__ import annotations

from datapackage_pipelines_specstore import npm as npm_output
from hypothesis import given, settings
from hypothesis import strategies as st

# Owner ids and dataset names as the spec's schema admits them.
SEGMENTS = st.text(alphabet=st.sampled_from("abcAB019._-~"), min_size=1, max_size=12).filter(
    lambda text: text not in (".", "..")
)


def test_package_names_of_different_datasets_never_collide():
    # Once both were mallory-corp-data: one owner could take the other's package.
    assert npm_output.package_name("mallory", "corp-data") == "mallory-corp-data"
    assert npm_output.package_name("mallory-corp", "data") == "mallory_2dcorp-data"
    assert npm_output.package_name("alice", "GDP_2019") == "alice-_47_44_50_5f2019"
    assert npm_output.package_name("alice", "gdp", scope="hub") == "@hub/alice-gdp"


@settings(max_examples=500, deadline=None)
@given(first=st.tuples(SEGMENTS, SEGMENTS), second=st.tuples(SEGMENTS, SEGMENTS))
def test_package_names_are_one_to_one(first, second):
    if first != second:
        assert npm_output.package_name(*first) != npm_output.package_name(*second)
