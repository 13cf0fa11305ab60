"""The npm output, published for real: verdaccio (a real npm registry) on loopback, the
real npm client publishing, and ``npm view`` / ``npm install`` / ``node`` reading the
packages back. The runs are the embedded runner's; DPP's are in tests/system/test_dpp.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from datapackage_pipelines_specstore import npm as npm_output

from specstore.config import NpmRegistry
from tests.support.api import stored_plan
from tests.support.npm import csv_rows, npm_spec, run_npm, run_to_the_end, tarball_files
from tests.support.pipelines import GDP_ROWS, sqlite_tables


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
    pipeline = stored_plan(app, "alice", "secret")
    step = pipeline["alice/secret"]["pipeline"][-2]
    assert step["run"] == "specstore.npm_publish"
    assert step["parameters"]["name"] == "@datahub/alice-secret"
    assert step["parameters"]["access"] == "restricted"
    view = run_npm(
        "view", "@datahub/alice-secret", "version", "--registry", npm_registry.url, cwd=tmp_path
    )
    assert view.stdout.strip() == "1.0.0"


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
