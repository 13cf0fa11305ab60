"""Every run publishes in the data hub's shape (derived CSV and JSON, preview, validation
report, zip, one datapackage.json written last), here to the local backend that
specstore serves at /data/, on the embedded runner, with real files and real dataflows."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.api import status_of, upload
from tests.support.net import StaticFiles
from tests.support.pipelines import GDP_ROWS, example_spec, wait_for

BASE = "http://127.0.0.1:5000/"


def _path(url: str) -> str:
    assert url.startswith(BASE), url
    return "/" + url.removeprefix(BASE)


def _get(client, url: str, token: str | None = None, **headers: str):
    if token:
        headers["Auth-Token"] = token
    return client.get(_path(url), headers=headers)


def _data_objects(root: Path) -> set[str]:
    """Every data object's key (every file but the revisions' descriptors)."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name != "datapackage.json"
    }


def _published(client, dataset: str = "gdp", token: str | None = None) -> dict:
    headers = {"Auth-Token": token} if token else {}
    status = wait_for(
        lambda: client.get(f"/source/alice/{dataset}/status", headers=headers).get_json()
    )
    assert status["state"] == "SUCCEEDED", status
    return status


def test_a_run_publishes_the_hub_shape_read_back_from_the_data_route(
    make_app, keypair, example_data, tmp_path
):
    client = make_app(runner_workers=1, preview_rows=2).test_client()
    assert upload(client, example_spec(example_data), keypair.token("alice")).status_code == 200
    status = _published(client)

    outputs = {output["name"]: output for output in status["outputs"]}
    assert {name: output["type"] for name, output in outputs.items()} == {
        "gdp": "source/tabular",
        "gdp_csv": "derived/csv",
        "gdp_json": "derived/json",
        "gdp_csv_preview": "derived/preview",
        "population": "source/tabular",
        "population_csv": "derived/csv",
        "population_json": "derived/json",
        "population_csv_preview": "derived/preview",
        "validation_report": "derived/report",
        "gdp_zip": "derived/zip",
    }
    assert status["validation"]["valid"] is True
    assert status["validation"]["error_count"] == 0
    assert "publication" not in status["stats"]
    # Every object is what the status says: its bytes, its MD5, in its key.
    for name, output in outputs.items():
        answer = _get(client, output["url"])
        assert answer.status_code == 200, name
        assert len(answer.data) == output["bytes"]
        assert hashlib.md5(answer.data).hexdigest() == output["hash"]
        assert urlsplit(output["url"]).path == (
            f"/data/alice/gdp/{name}/{output['hash']}/{name}.{output['format']}"
        )
    gdp_csv = _get(client, outputs["gdp_csv"]["url"])
    assert gdp_csv.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(gdp_csv.data.decode("utf-8"))))
    assert [(row["country"], int(row["year"])) for row in rows] == [
        (row[0], row[1]) for row in GDP_ROWS
    ]
    gdp_json = _get(client, outputs["gdp_json"]["url"]).get_json()
    assert [(row["country"], row["year"], row["gdp_usd_bn"]) for row in gdp_json] == [
        (row[0], row[1], float(row[2])) for row in GDP_ROWS
    ]
    preview = _get(client, outputs["gdp_csv_preview"]["url"]).get_json()
    assert preview == gdp_json[:2]
    source = _get(client, outputs["gdp"]["url"])
    assert (
        source.data
        == (Path(__file__).parents[2] / "examples/datapackage/gdp-2019.csv").read_bytes()
    )

    descriptor = _get(client, status["datapackage_url"]).get_json()
    assert descriptor["id"] == "alice/gdp"
    assert descriptor["title"] == "GDP and population of three countries"
    assert {res["name"]: res["path"] for res in descriptor["resources"]} == {
        name: output["url"] for name, output in outputs.items()
    }
    by_name = {res["name"]: res for res in descriptor["resources"]}
    assert by_name["gdp_csv"]["datahub"] == {"type": "derived/csv", "derivedFrom": ["gdp"]}
    assert by_name["gdp"]["datahub"] == {"type": "source/tabular"}
    assert by_name["gdp_csv"]["count_of_rows"] == len(GDP_ROWS)
    assert [field["name"] for field in by_name["gdp_json"]["schema"]["fields"]] == [
        "country",
        "year",
        "gdp_usd_bn",
    ]
    hub = descriptor["datahub"]
    assert {key: hub[key] for key in ("owner", "ownerid", "findability", "flowid")} == {
        "owner": "Alice",
        "ownerid": "alice",
        "findability": "published",
        "flowid": "alice/gdp/1",
    }
    assert hub["stats"]["bytes"] == sum(output["bytes"] for output in outputs.values())
    assert (
        hub["stats"]["rowcount"]
        == by_name["gdp_csv"]["count_of_rows"] + (by_name["population_csv"]["count_of_rows"])
    )

    report = _get(client, status["validation"]["report_url"]).get_json()
    assert report["valid"] is True
    assert [table["resource"] for table in report["tables"]] == ["gdp", "population"]

    archive = zipfile.ZipFile(io.BytesIO(_get(client, outputs["gdp_zip"]["url"]).data))
    assert sorted(archive.namelist()) == sorted(
        ["datapackage.json"]
        + [
            f"data/{name}.{output['format']}"
            for name, output in outputs.items()
            if output["type"] not in ("source/tabular", "derived/zip")
        ]
    )
    assert archive.read("data/gdp_csv.csv") == gdp_csv.data

    # The dashboard links every download and shows each table's first rows.
    page = client.get("/datasets/alice/gdp").get_data(as_text=True)
    for output in status["outputs"]:
        assert f'<a href="{output["url"]}">{output["name"]}</a>' in page
    assert f'<a id="datapackage" href="{status["datapackage_url"]}">' in page
    assert '<span id="validation">valid against its schemas</span>' in page
    preview = page.split('id="preview-gdp"', 1)[1].split("</table>", 1)[0]
    assert preview.count("<tr>") == 3  # the header and the 2 rows of the preview
    assert "<td>France</td><td>2019</td>" in preview

    # The same answer from info and the revision routes.
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["datapackage_url"] == status["datapackage_url"]
    assert info["outputs"] == status["outputs"]
    assert client.get("/source/alice/gdp/successful").get_json()["outputs"] == status["outputs"]


def test_the_data_route_answers_ranges_and_etags(make_app, keypair, example_data):
    client = make_app(runner_workers=1).test_client()
    upload(client, example_spec(example_data), keypair.token("alice"))
    status = _published(client)
    url = next(o["url"] for o in status["outputs"] if o["name"] == "gdp_csv")
    whole = _get(client, url)
    part = _get(client, url, Range="bytes=0-6")
    assert part.status_code == 206
    assert part.data == whole.data[:7] == b"country"
    assert part.headers["Content-Range"] == f"bytes 0-6/{len(whole.data)}"
    again = _get(client, url, **{"If-None-Match": whole.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    missing = client.get("/data/alice/gdp/gdp_csv/0123/gdp_csv.csv")
    assert missing.status_code == 404
    assert missing.get_json()["errors"] == [
        "no file gdp_csv/0123/gdp_csv.csv in the publications of alice/gdp"
    ]
    for escape in (
        "/data/alice/gdp/../../bob/x",
        "/data/alice/gdp/%2e%2e/x",
        "/data/alice/gdp/a//b",
    ):
        assert client.get(escape).status_code == 404


def test_a_private_dataset_is_served_to_its_owner_only(make_app, keypair, example_data):
    client = make_app(runner_workers=1).test_client()
    owner = keypair.token("alice")
    spec = example_spec(example_data, findability="private")
    upload(client, spec, owner)
    status = _published(client, token=owner)
    url = status["datapackage_url"]
    assert _get(client, url).status_code == 404
    assert _get(client, url, keypair.token("mallory")).status_code == 404
    assert _get(client, url, owner).get_json()["datahub"]["findability"] == "private"

    # Unlisted: to anyone with the URL.
    upload(client, example_spec(example_data, findability="unlisted"), owner)
    status = wait_for(lambda: client.get("/source/alice/gdp/status").get_json())
    assert status["state"] == "SUCCEEDED"
    assert _get(client, status["datapackage_url"]).status_code == 200
    # The older revision's objects turned with the dataset: readable now.
    assert _get(client, url).status_code == 200


def test_an_unchanged_rerun_stores_no_new_data_objects(make_app, keypair, example_data, tmp_path):
    client = make_app(runner_workers=1).test_client()
    spec = example_spec(example_data)
    upload(client, spec, keypair.token("alice"))
    first = _published(client)
    data = tmp_path / "data"
    objects = _data_objects(data)
    upload(client, spec, keypair.token("alice"))
    second = wait_for(lambda: client.get("/source/alice/gdp/2").get_json())
    assert second["state"] == "SUCCEEDED"
    assert second["datapackage_url"] != first["datapackage_url"]
    assert second["outputs"] == first["outputs"]
    assert _data_objects(data) == objects
    assert (data / "alice/gdp/1/datapackage.json").is_file()
    assert (data / "alice/gdp/2/datapackage.json").is_file()


def test_a_resource_named_as_a_derived_one_is_refused_at_upload(make_app, keypair, example_data):
    client = make_app().test_client()
    spec = example_spec(example_data)
    spec["inputs"][0]["parameters"]["descriptor"] = {
        "resources": [
            {"name": "x", "path": "x.csv"},
            {"name": "x_csv", "path": "y.csv"},
            {"name": "validation_report", "path": "z.csv"},
        ]
    }
    spec["processing"] = []
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "resource x_csv: the name is taken by the derived data of x in the published package: "
        "rename the resource",
        "resource validation_report: the name is taken by the validation report in the "
        "published package: rename the resource",
    ]
    assert client.get("/source/alice/gdp/status").status_code == 404


def test_data_that_breaks_its_schema_publishes_the_report_and_keeps_the_last_publication(
    make_app, keypair, tmp_path
):
    served = tmp_path / "served"
    served.mkdir()
    (served / "years.csv").write_text("country,year\nFrance,2019\n")
    client = make_app(runner_workers=1).test_client()
    schema = {
        "fields": [
            {"name": "country", "constraints": {"required": True}},
            {"name": "year", "type": "integer"},
        ]
    }
    with StaticFiles(str(served)) as files:
        spec = example_spec(files.url, dataset="years")
        spec["inputs"][0]["parameters"] = {
            "descriptor": {
                "name": "years",
                "resources": [{"name": "years", "path": "years.csv", "schema": schema}],
            }
        }
        spec["processing"] = []
        spec["outputs"] = []
        upload(client, spec, keypair.token("alice"))
        good = _published(client, "years")
        (served / "years.csv").write_text("country,year\nFrance,2019\nItaly,19x9\n,2020\nSpain,x\n")
        upload(client, spec, keypair.token("alice"))
        failed = wait_for(status_of(client, dataset="years"))
    assert failed["state"] == "FAILED"
    headline, *first = failed["errors"]
    assert headline.startswith(
        "3 values break the schema (required-constraint: 1, type-or-format-error: 2); "
        "every problem is in the validation report: http://127.0.0.1:5000/data/alice/years/"
        "validation_report/"
    )
    assert first == [
        "resource years, data row 2, field 'year': a text of 4 characters is not a valid integer",
        "resource years, data row 3, field 'country': an empty value breaks its required "
        "constraint",
        "resource years, data row 4, field 'year': a text of 1 character is not a valid integer",
    ]
    assert "datapackage_url" not in failed
    report = _get(client, headline.rsplit(" ", 1)[1]).get_json()
    assert report["valid"] is False
    assert report["error-count"] == 3
    table = report["tables"][0]
    assert (table["row-count"], table["error-count"]) == (4, 3)
    assert [(e["code"], e["row-number"], e["column-number"]) for e in table["errors"]] == [
        ("type-or-format-error", 2, 2),
        ("required-constraint", 3, 1),
        ("type-or-format-error", 4, 2),
    ]
    assert "19x9" not in json.dumps(report)  # values are described, never quoted
    # The last good publication is still what is served.
    successful = client.get("/source/alice/years/successful").get_json()
    assert successful["revision"] == 1
    assert successful["datapackage_url"] == good["datapackage_url"]
    assert _get(client, good["datapackage_url"]).status_code == 200
    assert not (tmp_path / "data/alice/years/2").exists()
    # The dashboard shows the errors, and the data of the newest revision that succeeded.
    page = client.get("/datasets/alice/years").get_data(as_text=True)
    assert "Data (revision 1, the newest that succeeded)" in page
    assert "data row 2, field &#39;year&#39;: a text of 4 characters is not a valid integer" in page
    assert "<td>France</td><td>2019</td>" in page
