"""POST /source/update: the engine's events, as DPP sends them and as the seed documented them."""

from __future__ import annotations

import json

import pytest

from specstore.store.installation import HOOK_TOKEN as HOOK_TOKEN_SETTING
from specstore.store.models import Setting
from specstore.web.representations import failure
from tests.support.api import (
    HOOK_TOKEN,
    SPEC,
    database_of,
    hook_credential,
    hook_query,
    make_spec,
    post_event,
    stored_revisions,
    upload,
)


@pytest.fixture
def uploaded(client, keypair):
    """alice/gdp with one revision, LOADED."""
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200


def status_of(client, dataset="gdp"):
    return client.get(f"/source/alice/{dataset}/status").get_json()


def test_a_run_moves_through_every_state(client, uploaded):
    steps = [
        ({"event": "queue"}, "REGISTERED"),
        ({"event": "start"}, "RUNNING"),
        ({"event": "progress", "log": ["load: 3 rows", "dump: done"]}, "RUNNING"),
        (
            {
                "event": "finish",
                "success": True,
                "stats": {"count_of_rows": 3, "bytes": None, "hash": "a1de", "dataset_name": "_"},
            },
            "SUCCEEDED",
        ),
    ]
    for payload, state in steps:
        response = post_event(client, {"pipeline_id": "./alice/gdp", **payload})
        assert response.status_code == 200
        assert response.get_json() == {
            "success": True,
            "id": "alice/gdp/1",
            "state": state,
            "applied": True,
            "errors": [],
        }
        assert status_of(client)["state"] == state

    status = status_of(client)
    assert status["logs"] == ["load: 3 rows", "dump: done"]
    assert status["stats"] == {
        "count_of_rows": 3,
        "bytes": None,
        "hash": "a1de",
        "dataset_name": "_",
    }
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["success"] is True
    assert info["message"] == "Succeeded"
    assert info["queued"] <= info["started"] <= info["ended"] == info["last_success"]


def test_a_failed_run_keeps_the_reason_without_traceback_or_server_paths(make_app, keypair):
    """DPP's error lines, as its hook sends them for a failed standard processor: the
    reason is kept, the traceback and the server's paths are not."""
    app = make_app(output_dir="/srv/specstore/output")
    client = app.test_client()
    upload(client, SPEC, keypair.token("alice"))
    errors = [
        "dump_to_sql",
        "Traceback (most recent call last):",
        '  File "/srv/dpp/venv/lib/python3.11/site-packages/dataflows/base/flow.py", line 16, '
        "in process",
        "    return self._chain().process()",
        "           ^^^^^^^^^^^^^^^^^^^^^^^",
        "sqlalchemy.exc.OperationalError: unable to open database file "
        "/srv/specstore/output/alice/gdp/.staging/1/gdp.sqlite",
    ]
    response = post_event(
        client,
        {"pipeline_id": "./alice/gdp", "event": "finish", "success": False, "errors": errors},
    )

    assert response.status_code == 200
    assert response.get_json()["state"] == "FAILED"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["state"] == "FAILED"
    assert info["success"] is False
    assert info["error_log"] == [
        "dump_to_sql: sqlalchemy.exc.OperationalError: unable to open database file "
        ".staging/1/gdp.sqlite"
    ]
    assert info["last_success"] is None


@pytest.mark.parametrize("text", ["a\x00b", "\udcff lone", "\x00"])
def test_events_are_recorded_whatever_their_text_holds(client, uploaded, text):
    """PostgreSQL stores no NUL and no lone surrogate: they are replaced, never the event
    refused (DPP does not retry a hook, so a refused finish would wait forever)."""
    body = json.dumps(
        {
            "pipeline_id": "./alice/gdp",
            "event": "finish",
            "success": False,
            "errors": [f"bad row: {text}"],
            "stats": {text: text},
        }
    )
    response = client.post(
        "/source/update",
        data=body,
        content_type="application/json",
        query_string=hook_query("alice", "gdp", 1),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["state"] == "FAILED"
    shown = text.replace("\x00", "\ufffd").replace("\udcff", "\ufffd")
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["error_log"] == [f"bad row: {shown}"]
    assert info["stats"] == {shown: shown}


def test_the_answers_carry_every_json_value_an_event_brought(client, uploaded):
    """status and info give back what the events held: text beyond ASCII, sent as UTF-8;
    integers past 64 bits (which the fast encoder refuses, so Flask's encodes that
    answer, as UTF-8 too), floats."""
    line = "load: Zoë ✓ 数据"
    progress = {"pipeline_id": "./alice/gdp", "event": "progress", "log": [line]}
    assert post_event(client, progress).status_code == 200
    response = client.get("/source/alice/gdp/status")
    assert json.loads(response.data)["logs"] == [line]
    assert line.encode() in response.data

    stats = {
        "count_of_rows": 2**70,
        "negative": -(2**63) - 1,
        "mean": 0.1,
        "dataset_name": "Zoë ✓ 数据",
        "nested": {"": [None, True, []]},
    }
    finish = {"pipeline_id": "./alice/gdp", "event": "finish", "success": True, "stats": stats}
    assert post_event(client, finish).status_code == 200
    for path in ("/source/alice/gdp/status", "/source/alice/gdp/info"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert json.loads(response.data)["stats"] == stats
        assert "Zoë ✓ 数据".encode() in response.data


@pytest.mark.parametrize(
    "payload",
    [
        {"pipeline_id": "./alice/gdp", "event": "start"},
        {"pipeline_id": "alice/gdp", "event": "start"},
        {"pipeline": "./alice/gdp", "event": "start"},
        {"pipeline": "alice/gdp", "event": "start"},
    ],
)
def test_both_spellings_of_the_pipeline_id_are_accepted(client, uploaded, payload):
    response = post_event(client, payload)
    assert response.status_code == 200
    assert status_of(client)["state"] == "RUNNING"


def test_the_old_finished_spelling_is_accepted(client, uploaded):
    response = post_event(client, {"pipeline": "alice/gdp", "event": "finished", "success": True})
    assert response.status_code == 200
    assert status_of(client)["state"] == "SUCCEEDED"


def test_the_hook_token_may_come_in_a_header(client, uploaded):
    response = client.post(
        "/source/update",
        json={"pipeline_id": "./alice/gdp", "event": "queue"},
        query_string={"dataset": "alice/gdp", "revision": 1},
        headers={"X-Hook-Token": hook_credential("alice", "gdp", 1)},
    )
    assert response.status_code == 200
    assert status_of(client)["state"] == "REGISTERED"


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [
        (None, 401, "the hook token is required (?token= or X-Hook-Token)"),
        ("", 401, "the hook token is required (?token= or X-Hook-Token)"),
        ("wrong-token", 403, "the hook token is not valid"),
        (hook_credential("alice", "gdp", 1) + "x", 403, "the hook token is not valid"),
        (hook_credential("alice", "gdp", 2), 403, "the hook token is not valid"),
        (hook_credential("alice", "gdq", 1), 403, "the hook token is not valid"),
        (hook_credential("bob", "gdp", 1), 403, "the hook token is not valid"),
        # The single token of older releases, when none is configured: nothing.
        (HOOK_TOKEN, 403, "the hook token is not valid"),
    ],
)
def test_events_without_the_hook_token_change_nothing(
    client, app, uploaded, token, status, message
):
    response = post_event(
        client, {"pipeline_id": "./alice/gdp", "event": "finish", "success": True}, token=token
    )

    assert response.status_code == status
    assert response.get_json() == failure(response.status_code, [message])
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


NOT_AN_ID = (
    "does not match: <ownerid>/<dataset>, or <ownerid>/<dataset>:<suffix> for a helper "
    "pipeline, with or without a leading ./"
)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "(root): [] is not of type 'object'"),
        ({"pipeline_id": "./alice/gdp"}, "(root): 'event' is a required property"),
        ({"event": "start"}, "(root): 'pipeline_id' or 'pipeline' is required"),
        ({"pipeline_id": "./alice/gdp", "event": "explode"}, "event: 'explode' is not one of"),
        ({"pipeline_id": "gdp", "event": "start"}, f"pipeline_id: 'gdp' {NOT_AN_ID}"),
        ({"pipeline_id": "./a/b/c", "event": "start"}, f"pipeline_id: './a/b/c' {NOT_AN_ID}"),
        ({"pipeline_id": "./alice/gdp", "event": "finish"}, "(root): 'success' is a required"),
        (
            {"pipeline_id": "./alice/gdp", "event": "progress", "log": "one line"},
            "log: 'one line' is not of type 'array'",
        ),
        (
            {"pipeline_id": "./alice/gdp", "event": "finish", "success": "yes"},
            "success: 'yes' is not of type 'boolean'",
        ),
        (
            {"pipeline_id": "./alice/gdp", "event": "finish", "success": False, "errors": [1]},
            "errors[0]: 1 is not of type 'string'",
        ),
    ],
)
def test_bad_payloads_are_400(client, app, uploaded, payload, message):
    response = client.post(
        "/source/update", json=payload, query_string=hook_query("alice", "gdp", 1)
    )

    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["id"] is None
    assert body["errors"][0].startswith(message), body
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


def test_a_body_that_is_not_json_is_400(client, uploaded):
    response = client.post(
        "/source/update",
        data=b"pipeline_id=x",
        content_type="application/json",
        query_string=hook_query("alice", "gdp", 1),
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0].startswith("the body is not valid JSON")


def test_an_unknown_pipeline_is_404(client, uploaded):
    response = post_event(client, {"pipeline_id": "./alice/nothing", "event": "start"})
    assert response.status_code == 404
    assert response.get_json() == {
        "success": False,
        "id": None,
        "errors": ["unknown pipeline 'alice/nothing'"],
        "error": {"status": 404, "message": "unknown pipeline 'alice/nothing'"},
    }


def test_an_unknown_revision_is_404(client, app, uploaded):
    response = post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"}, revision=7)
    assert response.status_code == 404
    assert response.get_json()["errors"] == ["pipeline 'alice/gdp' has no revision 7"]
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


def test_late_and_repeated_events_never_move_a_revision_back(client, app, uploaded):
    finish = {"pipeline_id": "./alice/gdp", "event": "finish", "success": True}
    assert post_event(client, finish).get_json()["state"] == "SUCCEEDED"

    for payload in (
        {"pipeline_id": "./alice/gdp", "event": "queue"},
        {"pipeline_id": "./alice/gdp", "event": "start"},
        {"pipeline_id": "./alice/gdp", "event": "progress", "log": ["late"]},
        {"pipeline_id": "./alice/gdp", "event": "finish", "success": False, "errors": ["x"]},
        finish,
    ):
        response = post_event(client, payload)
        assert response.status_code == 200
        assert response.get_json()["state"] == "SUCCEEDED"
        assert response.get_json()["applied"] is False

    assert stored_revisions(app) == [("alice", "gdp", 1, "SUCCEEDED")]
    assert client.get("/source/alice/gdp/info").get_json()["error_log"] == []


def test_a_queue_after_start_does_not_move_back(client, uploaded):
    post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"})
    response = post_event(client, {"pipeline_id": "./alice/gdp", "event": "queue"})
    assert response.get_json()["state"] == "RUNNING"
    assert response.get_json()["applied"] is False


def test_a_repeated_progress_event_does_not_repeat_the_log(client, uploaded):
    progress = {"pipeline_id": "./alice/gdp", "event": "progress", "log": ["a", "b"]}
    post_event(client, progress)
    post_event(client, progress)
    assert status_of(client)["logs"] == ["a", "b"]


def test_events_for_an_older_revision_do_not_change_the_newest(client, app, keypair, uploaded):
    assert upload(client, make_spec(), keypair.token("alice")).get_json()["revision"] == 2

    response = post_event(
        client, {"pipeline_id": "./alice/gdp", "event": "finish", "success": True}, revision=1
    )
    assert response.get_json()["id"] == "alice/gdp/1"
    assert response.get_json()["state"] == "SUCCEEDED"
    assert status_of(client)["state"] == "LOADED"
    assert stored_revisions(app) == [
        ("alice", "gdp", 1, "SUCCEEDED"),
        ("alice", "gdp", 2, "LOADED"),
    ]
    assert client.get("/source/alice/gdp/successful").get_json()["revision"] == 1


def test_events_without_a_revision_are_for_the_newest(client, app, keypair, uploaded):
    upload(client, make_spec(), keypair.token("alice"))
    response = post_event(client, {"pipeline_id": "./alice/gdp", "event": "start"})
    assert response.get_json()["id"] == "alice/gdp/2"
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED"), ("alice", "gdp", 2, "RUNNING")]


def test_helper_pipelines_feed_the_main_revision(client, uploaded):
    helper = "./alice/gdp:gdp_csv"
    post_event(client, {"pipeline_id": helper, "event": "start"})
    assert status_of(client)["state"] == "RUNNING"

    response = post_event(
        client, {"pipeline_id": helper, "event": "finish", "success": True, "log": ["helper ok"]}
    )
    assert response.get_json()["state"] == "RUNNING"  # the main pipeline has not finished

    response = post_event(
        client,
        {"pipeline_id": helper, "event": "finish", "success": False, "errors": ["bad row"]},
    )
    assert response.get_json()["state"] == "FAILED"
    info = client.get("/source/alice/gdp/info").get_json()
    assert info["error_log"] == ["alice/gdp:gdp_csv: bad row"]
    assert info["reason"] == "helper ok"


def test_status_shows_only_the_last_50_log_lines_as_a_flat_list(client, uploaded):
    lines = [f"line {number}" for number in range(120)]
    post_event(client, {"pipeline_id": "./alice/gdp", "event": "progress", "log": lines})

    logs = status_of(client)["logs"]
    assert logs == lines[-50:]
    assert all(isinstance(line, str) for line in logs)
    assert client.get("/source/alice/gdp/info").get_json()["reason"] == "\n".join(lines)


def test_without_a_hook_secret_configured_one_is_made_and_shared(make_app, keypair):
    """Each revision's credential comes from a secret the installation makes once and
    keeps in its database: every worker (and restart) derives the same ones, and they
    are not those of another secret."""
    first = make_app(hook_secret=None)
    second = make_app(hook_secret=None)  # another worker on the same database
    issued = first.extensions["specstore.components"].hooks.for_revision("alice", "gdp", 1)

    assert len(issued) >= 43
    assert second.extensions["specstore.components"].hooks.for_revision("alice", "gdp", 1) == issued
    assert issued != hook_credential("alice", "gdp", 1)  # the tests' own secret's
    assert upload(first.test_client(), make_spec(), keypair.token("alice")).status_code == 200
    payload = {"pipeline_id": "./alice/gdp", "event": "queue"}
    assert (
        post_event(
            second.test_client(), payload, token=hook_credential("alice", "gdp", 1)
        ).status_code
        == 403
    )
    assert post_event(second.test_client(), payload, token=issued).status_code == 200


def test_a_credential_opens_its_own_revision_only(client, app, keypair):
    """A credential that leaks (DPP's dashboard and logs show hook URLs) affects one run
    of one owner: mallory's own credential, or alice's of another revision, sent with
    the dataset and revision it is not for, or with a body naming another pipeline or
    revision than its URL, moves nothing."""
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert upload(client, make_spec("mallory", "gdp"), keypair.token("mallory")).status_code == 200
    finish = {"event": "finish", "success": False, "errors": ["forged by mallory"]}
    forged = [
        # mallory's credential, her dataset's URL, alice's pipeline in the body
        ({"pipeline_id": "./alice/gdp", **finish}, hook_query("mallory", "gdp", 1)),
        # alice's revision 1 credential, used for revision 2
        (
            {"pipeline_id": "./alice/gdp", **finish},
            {**hook_query("alice", "gdp", 1), "revision": 2},
        ),
        # the URL of revision 1, the body naming revision 2
        ({"pipeline_id": "./alice/gdp", "revision": 2, **finish}, hook_query("alice", "gdp", 1)),
        # a credential without the dataset and revision it is for
        ({"pipeline_id": "./alice/gdp", **finish}, {"token": hook_credential("alice", "gdp", 2)}),
    ]
    for payload, query in forged:
        response = client.post("/source/update", json=payload, query_string=query)
        assert response.status_code == 403, (query, response.get_json())
        assert response.get_json()["errors"][0].startswith("the hook token is")
    assert stored_revisions(app) == [
        ("alice", "gdp", 1, "LOADED"),
        ("alice", "gdp", 2, "LOADED"),
        ("mallory", "gdp", 1, "LOADED"),
    ]
    # Each credential does what it is for.
    response = client.post(
        "/source/update",
        json={"pipeline_id": "./alice/gdp", "event": "start"},
        query_string=hook_query("alice", "gdp", 2),
    )
    assert response.status_code == 200 and response.get_json()["id"] == "alice/gdp/2"


def test_the_old_single_token_works_until_it_is_retired(make_app, keypair, caplog):
    """During an upgrade, revisions handed to DPP before it carry the single token of
    older releases in their hook URLs: HOOK_TOKEN, or the one the installation made
    (kept in its settings). Both are still taken, each use logged; `specstore hook-token
    --retire` (here: the installation forgetting it) and unsetting HOOK_TOKEN end it."""
    configured = make_app(hook_token=HOOK_TOKEN)
    client = configured.test_client()
    assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    queue = {"pipeline_id": "./alice/gdp", "event": "queue"}
    with caplog.at_level("WARNING", logger="specstore.hooks"):
        legacy = client.post(
            "/source/update", json=queue, query_string={"token": HOOK_TOKEN, "revision": 1}
        )
    assert legacy.status_code == 200 and legacy.get_json()["state"] == "REGISTERED"
    assert "carried the old single hook token" in caplog.text and HOOK_TOKEN not in caplog.text

    # An installation an older release made a token for (without HOOK_TOKEN).
    made = "made-by-an-older-release"
    with database_of(configured).transaction(write=True) as session:
        session.add(Setting(name=HOOK_TOKEN_SETTING, value=made))
    upgraded = make_app()
    start = {"pipeline_id": "./alice/gdp", "event": "start"}
    answer = upgraded.test_client().post("/source/update", json=start, query_string={"token": made})
    assert answer.status_code == 200 and answer.get_json()["state"] == "RUNNING"
    assert upgraded.extensions["specstore.components"].installation.forget(HOOK_TOKEN_SETTING)
    retired = make_app()
    answer = retired.test_client().post("/source/update", json=start, query_string={"token": made})
    assert answer.status_code == 403
