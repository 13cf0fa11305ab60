"""npm outputs at upload: credentials and names refused before anything is stored, and a
plan that names credentials without holding them."""

from __future__ import annotations

import json

import pytest

from specstore.config import NpmRegistry, configure
from specstore.web.representations import failure
from tests.support.api import stored_plan, stored_revisions, upload
from tests.support.npm import npm_spec


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

    from specstore.pipelines.layout import OutputLayout
    from specstore.pipelines.outputs import Outputs
    from specstore.pipelines.planner import Planner

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
        Outputs(settings.engine_url, npm_registry=settings.npm_registry),
        Limits(timeout=5, max_bytes=1024),
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
        stored_plan(app, owner, dataset)[f"{owner}/{dataset}"]["pipeline"][-2]["parameters"]["name"]
        for owner, dataset in (("mallory", "corp-data"), ("mallory-corp", "data"))
    ]
    assert names == ["mallory-corp-data", "mallory_2dcorp-data"]
