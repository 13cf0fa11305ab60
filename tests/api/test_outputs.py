"""Outputs checked at upload: rdbms connections by name only, zip names inside the
output folder."""

from __future__ import annotations

import pytest

from tests.support.api import stored_revisions, upload
from tests.support.pipelines import (
    example_spec,
)


def test_an_rdbms_output_naming_an_unknown_connection_is_400(make_app, keypair):
    app = make_app(engines={"WAREHOUSE": "postgresql://x"})
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "elsewhere"}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))

    assert response.status_code == 400
    assert response.get_json()["errors"] == [
        "outputs[0].parameters.engine: no database connection named 'elsewhere' is configured "
        "on this server"
    ]
    assert stored_revisions(app) == []


def test_an_rdbms_output_must_name_a_connection_not_give_one(make_app, keypair):
    app = make_app()
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "rdbms", "parameters": {"engine": "postgresql://u:p@db/x"}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("outputs[0].parameters.engine: ")
    assert stored_revisions(app) == []


@pytest.mark.parametrize("name", ["../../x.zip", "/tmp/x.zip", "a/b.zip", "..", "."])
def test_zip_file_names_that_would_leave_the_output_folder_are_400(make_app, keypair, name):
    app = make_app()
    spec = example_spec("http://files.test/")
    spec["outputs"] = [{"kind": "zip", "parameters": {"out-file": name}}]
    response = upload(app.test_client(), spec, keypair.token("alice"))
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("outputs[0].parameters['out-file']: ")
    assert stored_revisions(app) == []
