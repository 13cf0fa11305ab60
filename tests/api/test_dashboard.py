"""The dashboard pages through the test client: what each viewer sees is what the API
shows them."""

from __future__ import annotations

from tests.support.api import make_spec, post_event, upload
from tests.support.pipelines import example_spec


def test_the_index_lists_published_datasets_newest_first(client, keypair):
    token = keypair.token("alice")
    upload(client, example_spec("http://files.test/", dataset="older"), token)
    upload(client, example_spec("http://files.test/", dataset="newer"), token)
    upload(
        client, example_spec("http://files.test/", dataset="hidden", findability="private"), token
    )
    bobs = example_spec("http://files.test/", dataset="other", ownerid="bob")
    upload(client, bobs, keypair.token("bob"))

    page = client.get("/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert html.index("bob/other") < html.index("alice/newer") < html.index("alice/older")
    assert "alice/hidden" not in html
    mine = client.get("/", query_string={"owner": "alice", "jwt": token}).get_data(as_text=True)
    assert "alice/hidden" in mine and "bob/other" not in mine


def test_a_dataset_page_shows_its_run_and_refreshes_while_it_runs(client, keypair):
    upload(client, example_spec("http://files.test/"), keypair.token("alice"))
    post_event(client, {"pipeline_id": "alice/gdp", "event": "progress", "log": ["loading gdp"]})
    running = client.get("/datasets/alice/gdp").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="3">' in running
    assert "loading gdp" in running and "RUNNING" in running

    post_event(
        client,
        {"pipeline_id": "alice/gdp", "event": "finish", "success": False, "errors": ["it broke"]},
    )
    failed = client.get("/datasets/alice/gdp").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in failed
    assert "it broke" in failed and "FAILED" in failed


def test_private_dataset_pages_are_only_for_their_owner(client, keypair):
    token = keypair.token("alice")
    upload(client, example_spec("http://files.test/", findability="private"), token)
    assert client.get("/datasets/alice/gdp").status_code == 404
    assert client.get("/datasets/alice/gdp", query_string={"jwt": token}).status_code == 200


def test_a_missing_or_private_dataset_is_an_html_404_page_and_the_same_one(client, keypair):
    """A browser gets a page it shows (the API, JSON); a private dataset's page is a
    missing one's, word for word."""
    upload(client, make_spec(dataset="secret", findability="private"), keypair.token("alice"))
    missing = client.get("/datasets/alice/nope")
    assert (missing.status_code, missing.mimetype) == (404, "text/html")
    assert "<h1>Not found</h1>" in missing.text
    assert '<p id="error">no dataset alice/nope</p>' in missing.text
    assert "?jwt=" in missing.text  # how an owner sees their private dataset
    private = client.get("/datasets/alice/secret")
    assert private.status_code == 404
    assert private.text == missing.text.replace("alice/nope", "alice/secret")
    api = client.get("/source/alice/nope/status")
    assert (api.status_code, api.mimetype) == (404, "application/json")
    assert api.get_json()["errors"] == ["no dataset alice/nope"]


def test_the_dashboard_lists_only_the_revisions_the_api_shows(client, keypair):
    """Reproduced: a dataset's page listed an older private revision (its number, state
    and times) that the API answers 404 for."""
    token = keypair.token("alice")
    assert upload(client, make_spec(findability="private"), token).status_code == 200
    assert upload(client, make_spec(), token).status_code == 200
    assert client.get("/source/alice/gdp/1").status_code == 404
    page = client.get("/datasets/alice/gdp").text
    assert "<tr><td>2</td>" in page
    assert "<tr><td>1</td>" not in page
    owners = client.get("/datasets/alice/gdp", query_string={"jwt": token}).text
    assert "<tr><td>2</td>" in owners and "<tr><td>1</td>" in owners
