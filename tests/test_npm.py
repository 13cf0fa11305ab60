"""The npm output, published for real: verdaccio (a real npm registry) on loopback, the
real npm client publishing, and ``npm view`` / ``npm install`` / ``node`` reading the
packages back. The runs are the embedded runner's; DPP's are in tests/test_dpp.py."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from datapackage_pipelines_specstore import npm as npm_output
from hypothesis import given, settings
from hypothesis import strategies as st

from specstore.config import NpmRegistry, configure
from specstore.representations import failure
from tests.conftest import stored_revisions, upload
from tests.support.pipelines import example_spec, sqlite_tables, wait_for
from tests.test_pipelines import GDP_ROWS


def run_npm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["npm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=npm_env(cwd),
    )


def npm_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "npm_config_cache": str(home / ".npm-cache"),
        "npm_config_userconfig": str(home / ".npmrc"),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def npm_spec(base_url: str, dataset: str = "gdp", credentials: str | None = "local", **meta):
    spec = example_spec(base_url, dataset=dataset, **meta)
    parameters = {"credentials": credentials} if credentials else {}
    spec["outputs"] = [{"kind": "sqlite"}, {"kind": "npm", "parameters": parameters}]
    return spec


def run_to_the_end(client, keypair, spec) -> dict:
    owner, dataset = spec["meta"]["ownerid"], spec["meta"]["dataset"]
    headers = {"Auth-Token": keypair.token(owner)}
    response = upload(client, spec, headers["Auth-Token"])
    assert response.status_code == 200, response.get_json()
    status = f"/source/{owner}/{dataset}/status"
    return wait_for(lambda: client.get(status, headers=headers).get_json())


def tarball_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isfile()
        }


def csv_rows(data: bytes) -> list[tuple]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    return [(country, int(year), float(gdp)) for country, year, gdp in rows[1:]]


def test_every_revision_is_published_and_installs_back(
    make_app, keypair, example_data, npm_registry, npm_token, tmp_path
):
    app = make_app(
        runner_workers=1, npm_registries={"LOCAL": NpmRegistry(npm_registry.url, npm_token)}
    )
    client = app.test_client()
    spec = npm_spec(example_data, dataset="gdp-npm")

    first = run_to_the_end(client, keypair, spec)
    assert first["state"] == "SUCCEEDED", first
    assert any("published alice-gdp-npm@1.0.0" in line for line in first["logs"])
    out = tmp_path / "output" / "alice" / "gdp-npm"
    tarball = out / "npm" / "alice-gdp-npm-1.0.0.tgz"
    files = tarball_files(tarball)
    assert sorted(files) == [
        "package/README.md",
        "package/datapackage.json",
        "package/gdp.csv",
        "package/package.json",
        "package/population.csv",
    ]
    package = json.loads(files["package/package.json"])
    assert package == {
        "name": "alice-gdp-npm",
        "version": "1.0.0",
        "description": (
            "A small data package to try specstore with: one CSV and one Excel resource."
        ),
        "keywords": ["datapackage", "data"],
        "main": "datapackage.json",
        "files": ["datapackage.json", "README.md", "gdp.csv", "population.csv"],
        "license": "ODC-PDDL-1.0",
    }
    readme = files["package/README.md"].decode()
    assert readme.startswith("# GDP and population of three countries\n")
    assert "| gdp | `gdp.csv` | 3 |" in readme
    assert "require('alice-gdp-npm')" in readme
    # The other output is there too.
    assert sqlite_tables(out / "gdp-npm.sqlite")["gdp"]["rows"] == GDP_ROWS

    second = run_to_the_end(client, keypair, spec)
    assert second["state"] == "SUCCEEDED", second
    assert (out / "npm" / "alice-gdp-npm-2.0.0.tgz").exists()

    view = run_npm("view", "alice-gdp-npm", "--json", "--registry", npm_registry.url, cwd=tmp_path)
    assert view.returncode == 0, view.stderr
    published = json.loads(view.stdout)
    assert published["versions"] == ["1.0.0", "2.0.0"]
    assert published["dist-tags"] == {"latest": "2.0.0"}
    assert published["license"] == "ODC-PDDL-1.0"

    # A JavaScript project installs a revision and reads its data.
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "consumer", "private": true}')
    installed = run_npm(
        "install", "alice-gdp-npm@1.0.0", "--registry", npm_registry.url, "--no-save", cwd=project
    )
    assert installed.returncode == 0, installed.stderr
    module = project / "node_modules" / "alice-gdp-npm"
    assert json.loads((module / "package.json").read_text())["version"] == "1.0.0"
    assert csv_rows((module / "gdp.csv").read_bytes()) == GDP_ROWS
    read = subprocess.run(
        [
            "node",
            "-e",
            "const p = require('alice-gdp-npm');"
            "console.log(JSON.stringify(p.resources.map(r => [r.name, r.path])))",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(read.stdout) == [["gdp", "gdp.csv"], ["population", "population.csv"]]


def test_without_credentials_the_package_is_built_and_not_published(
    make_app, keypair, example_data, npm_registry, tmp_path
):
    app = make_app(runner_workers=1)
    client = app.test_client()
    status = run_to_the_end(client, keypair, npm_spec(example_data, "local-only", None))
    assert status["state"] == "SUCCEEDED", status
    assert any("not published" in line for line in status["logs"])
    tarball = tmp_path / "output" / "alice" / "local-only" / "npm" / "alice-local-only-1.0.0.tgz"
    assert json.loads(tarball_files(tarball)["package/package.json"])["version"] == "1.0.0"
    view = run_npm("view", "alice-local-only", "--registry", npm_registry.url, cwd=tmp_path)
    assert view.returncode != 0
    assert "E404" in view.stderr


def test_a_publish_npm_refuses_fails_the_revision_with_npms_message(
    make_app, keypair, example_data, npm_registry, tmp_path
):
    app = make_app(
        runner_workers=1,
        npm_registries={"LOCAL": NpmRegistry(npm_registry.url, "not-a-token-the-registry-knows")},
    )
    client = app.test_client()
    status = run_to_the_end(client, keypair, npm_spec(example_data, "refused"))
    assert status["state"] == "FAILED", status
    info = client.get("/source/alice/refused/info").get_json()
    message = info["error_log"][0]
    assert message.startswith(f"publishing alice-refused@1.0.0 to {npm_registry.url} failed: ")
    assert "E401" in message or "E403" in message, message
    assert "not-a-token" not in json.dumps(info)
    # A failed run publishes nothing: its outputs stay staged, for a look, and the
    # dataset's folder keeps what it had (here, nothing yet).
    out = tmp_path / "output" / "alice" / "refused"
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == []
    staged = out / ".staging" / "1"
    assert sqlite_tables(staged / "refused.sqlite")["gdp"]["rows"] == GDP_ROWS
    assert (staged / "npm" / "alice-refused-1.0.0.tgz").exists()


def test_a_scoped_package_for_a_dataset_that_is_not_published_is_restricted(
    make_app, keypair, example_data, npm_registry, npm_token, tmp_path
):
    app = make_app(
        runner_workers=1,
        npm_registries={"HUB": NpmRegistry(npm_registry.url, npm_token, scope="datahub")},
    )
    client = app.test_client()
    spec = npm_spec(example_data, "secret", "hub", findability="private")
    status = run_to_the_end(client, keypair, spec)
    assert status["state"] == "SUCCEEDED", status
    pipeline = app.extensions["specstore"].registry.revision("alice", "secret").revision.pipelines
    step = pipeline["alice/secret"]["pipeline"][-2]
    assert step["run"] == "specstore.npm_publish"
    assert step["parameters"]["name"] == "@datahub/alice-secret"
    assert step["parameters"]["access"] == "restricted"
    view = run_npm(
        "view", "@datahub/alice-secret", "version", "--registry", npm_registry.url, cwd=tmp_path
    )
    assert view.stdout.strip() == "1.0.0"


@pytest.mark.parametrize(
    ("credentials", "findability", "message"),
    [
        (
            "elsewhere",
            "published",
            "outputs[1].parameters.credentials: no npm credentials named 'elsewhere' are "
            "configured on this server",
        ),
        (
            "local",
            "private",
            "outputs[1]: a dataset that is not published is published to npm only as a "
            "restricted package, which needs a scope: the npm credentials 'local' have none "
            "(NPM_LOCAL_SCOPE)",
        ),
    ],
)
def test_npm_credentials_this_server_cannot_use_are_refused_at_upload(
    make_app, keypair, credentials, findability, message
):
    app = make_app(npm_registries={"LOCAL": NpmRegistry("http://npm.test/", "t")})
    client = app.test_client()
    spec = npm_spec("http://files.test/", credentials=credentials, findability=findability)
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json() == failure(response.status_code, [message])
    assert stored_revisions(app) == []


def test_two_npm_outputs_are_refused(make_app, keypair):
    client = make_app().test_client()
    spec = npm_spec("http://files.test/", credentials=None)
    spec["outputs"].append({"kind": "npm"})
    response = upload(client, spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"] == ["outputs[2]: a spec has at most one npm output"]


def test_the_plan_names_the_credentials_and_never_holds_them(tmp_path):
    from datapackage_pipelines_specstore.fetch import Limits

    from specstore.pipelines.planner import OutputLayout, Planner

    settings = configure(
        {
            "NPM_LOCAL_REGISTRY": "http://npm.test",
            "NPM_LOCAL_TOKEN": "s3cret-token",
            "NPM_CONFIG_REGISTRY": "http://npm.mirror.test/",
        }
    )
    assert list(settings.npm_registries) == ["LOCAL"]
    planner = Planner(
        OutputLayout(tmp_path),
        settings.engine_url,
        Limits(timeout=5, max_bytes=1024),
        settings.npm_registry,
    )
    spec = npm_spec("http://files.test/")
    spec["outputs"].insert(0, spec["outputs"].pop())  # npm first in the spec...
    descriptor = {
        "resources": [
            {"name": "gdp", "path": "gdp.csv"},
            {"name": "population", "path": "population.xlsx"},
        ]
    }
    plan = planner.plan(spec, 4, descriptor)
    # ... and last in the plan, after every other output (then published with them).
    assert [step["run"] for step in plan.main["pipeline"]][-3:] == [
        "specstore.package",
        "specstore.npm_publish",
        "specstore.publish",
    ]
    staging = tmp_path.resolve() / "alice" / "gdp" / ".staging" / "4"
    assert plan.main["pipeline"][-2]["parameters"] == {
        "name": "alice-gdp",
        "version": "4.0.0",
        "dataset": "alice/gdp",
        "revision": 4,
        "source": str(staging / "datapackage"),
        "out-path": str(staging / "npm"),
        "credentials": "LOCAL",
        "access": "public",
    }
    assert "s3cret" not in json.dumps(plan.pipelines)
    assert settings.npm_environment() == {
        "NPM_LOCAL_REGISTRY": "http://npm.test/",
        "NPM_LOCAL_TOKEN": "s3cret-token",
    }
    assert "s3cret" not in repr(settings)


def test_publishing_a_version_again_is_fine_only_with_the_very_same_tarball(
    npm_registry, npm_token, tmp_path, monkeypatch
):
    """A revision run again (after a restart, say) publishes the same tarball again."""
    monkeypatch.setenv("NPM_LOCAL_REGISTRY", npm_registry.url)
    monkeypatch.setenv("NPM_LOCAL_TOKEN", npm_token)
    parameters = {
        "name": "alice-again",
        "version": "1.0.0",
        "dataset": "alice/again",
        "revision": 1,
        "credentials": "LOCAL",
    }

    def package(content: str) -> Path:
        source = tmp_path / content / "datapackage"
        source.mkdir(parents=True, exist_ok=True)
        descriptor = {"name": "again", "resources": [{"name": "a", "path": "a.csv"}]}
        (source / "datapackage.json").write_text(json.dumps(descriptor))
        (source / "a.csv").write_text(f"x\n{content}\n")
        out = {"source": str(source), "out-path": str(tmp_path / content / "npm")}
        return npm_output.build({**parameters, **out})

    package("one")
    package("one")  # the same bytes: already there, not an error
    with pytest.raises(npm_output.NpmError) as refused:
        package("two")
    assert str(refused.value).startswith(
        f"publishing alice-again@1.0.0 to {npm_registry.url} failed: "
    )
    assert "cannot publish over the previously published versions: 1.0.0" in str(refused.value)


def test_a_package_name_npm_would_refuse_is_refused_at_upload(make_app, keypair):
    client = make_app(npm_registries={"LOCAL": NpmRegistry("http://npm.test/", "t")}).test_client()
    owner, dataset = "o" * 128, "d" * 100
    spec = npm_spec("http://files.test/", dataset=dataset)
    spec["meta"]["ownerid"] = owner
    response = upload(client, spec, keypair.token(owner))
    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        f"outputs[1]: the npm package name '{owner}-{dataset}' is longer than 214 characters"
    ]


def test_package_names_of_different_datasets_never_collide():
    # Once both were mallory-corp-data: one owner could take the other's package.
    assert npm_output.package_name("mallory", "corp-data") == "mallory-corp-data"
    assert npm_output.package_name("mallory-corp", "data") == "mallory_2dcorp-data"
    assert npm_output.package_name("alice", "GDP_2019") == "alice-_47_44_50_5f2019"
    assert npm_output.package_name("alice", "gdp", scope="hub") == "@hub/alice-gdp"


SEGMENTS = st.text(alphabet=st.sampled_from("abcAB019._-~"), min_size=1, max_size=12).filter(
    lambda text: text not in (".", "..")
)


@settings(max_examples=500, deadline=None)
@given(first=st.tuples(SEGMENTS, SEGMENTS), second=st.tuples(SEGMENTS, SEGMENTS))
def test_package_names_are_one_to_one(first, second):
    if first != second:
        assert npm_output.package_name(*first) != npm_output.package_name(*second)


def test_two_owners_whose_names_once_met_get_two_packages(make_app, keypair, tmp_path):
    app = make_app(
        npm_registries={"LOCAL": NpmRegistry("http://npm.test/", "t")},
        dpp_pipelines_dir=str(tmp_path / "dpp"),
    )
    client = app.test_client()
    for owner, dataset in (("mallory", "corp-data"), ("mallory-corp", "data")):
        spec = npm_spec("http://files.test/", dataset=dataset)
        spec["meta"]["ownerid"] = owner
        spec["inputs"][0]["parameters"]["descriptor"] = {"name": dataset, "resources": []}
        spec["processing"] = []
        assert upload(client, spec, keypair.token(owner)).status_code == 200
    names = [
        app.extensions["specstore"]
        .registry.revision(owner, dataset)
        .revision.pipelines[f"{owner}/{dataset}"]["pipeline"][-2]["parameters"]["name"]
        for owner, dataset in (("mallory", "corp-data"), ("mallory-corp", "data"))
    ]
    assert names == ["mallory-corp-data", "mallory_2dcorp-data"]
