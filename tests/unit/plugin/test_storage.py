"""Keys are made from validated names only, and the local backend never writes or reads
outside its folder."""

from __future__ import annotations

import pytest
from datapackage_pipelines_specstore.storage import (
    LocalStorage,
    S3Storage,
    content_type,
    data_key,
    descriptor_key,
    from_parameters,
)


def test_keys_are_the_hubs_layout():
    assert data_key("alice", "gdp", "gdp_csv", "0a1b", "gdp_csv.csv") == (
        "alice/gdp/gdp_csv/0a1b/gdp_csv.csv"
    )
    assert descriptor_key("alice", "gdp", 3) == "alice/gdp/3/datapackage.json"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\0b"])
def test_a_name_that_is_not_one_segment_makes_no_key(bad):
    with pytest.raises(ValueError, match="is not a key segment"):
        data_key("alice", "gdp", bad, "0a1b", "x.csv")
    with pytest.raises(ValueError, match="is not a key segment"):
        descriptor_key(bad, "gdp", 1)


def test_the_local_backend_stays_in_its_folder(tmp_path):
    storage = LocalStorage(tmp_path / "data", "http://127.0.0.1:5000/data/")
    source = tmp_path / "x.csv"
    source.write_text("a,b\n1,2\n")
    storage.put("alice/gdp/x/0a/x.csv", source, public=True)
    assert (tmp_path / "data/alice/gdp/x/0a/x.csv").read_text() == "a,b\n1,2\n"
    assert storage.has("alice/gdp/x/0a/x.csv")
    assert storage.url("alice/gdp/x/0a/x.csv") == "http://127.0.0.1:5000/data/alice/gdp/x/0a/x.csv"
    for escape in ("alice/../../x.csv", "alice//x.csv", "/etc/passwd", "alice/gdp/.."):
        with pytest.raises(ValueError):
            storage.path(escape)
    # Written whole: no temporary file is left beside it.
    assert sorted(p.name for p in (tmp_path / "data/alice/gdp/x/0a").iterdir()) == ["x.csv"]


def test_s3_urls_and_the_storage_as_a_plan_names_it():
    storage = from_parameters(
        {"kind": "s3", "bucket": "hub", "prefix": "/pkg/", "endpoint-url": "http://s3.test:9000"}
    )
    assert isinstance(storage, S3Storage)
    assert storage.url("alice/gdp/1/datapackage.json") == (
        "http://s3.test:9000/hub/pkg/alice/gdp/1/datapackage.json"
    )
    assert storage.describe() == "the object storage (bucket hub at http://s3.test:9000)"
    on_aws = S3Storage("hub")
    assert on_aws.url("a/b c.csv") == "https://hub.s3.amazonaws.com/a/b%20c.csv"
    behind_a_cdn = S3Storage("hub", public_url="https://data.example.org")
    assert behind_a_cdn.url("a/b.csv") == "https://data.example.org/a/b.csv"


def test_content_types():
    assert content_type("x.csv") == "text/csv; charset=utf-8"
    assert content_type("x.json") == "application/json"
    assert content_type("x.zip") == "application/zip"
    assert content_type("x.unknown-kind") == "application/octet-stream"
