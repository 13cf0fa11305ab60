"""Permission tokens on upload: only RS256 tokens from the auth service's key get in."""

from __future__ import annotations

import time

import pytest

from specstore.auth import RemotePublicKey
from specstore.http_client import HttpClient
from tests.support.api import make_spec, stored_revisions, upload
from tests.support.net import FakeAuthService
from tests.support.tokens import alg_none_token, forged_header_token, hs256_with_public_key

REFRESH_INTERVAL = 0.5


def _rejected(response, status, message):
    assert response.status_code == status
    body = response.get_json()
    assert body["success"] is False and body["id"] is None
    assert body["errors"] == [message]


def test_no_token_is_401(client, app):
    _rejected(
        upload(client, make_spec(), None),
        401,
        "a permission token is required in the Auth-Token header",
    )
    assert stored_revisions(app) == []


BAD_TOKENS = {
    "alg none": (lambda keys: alg_none_token("alice"), "the token must be signed with RS256"),
    "HS256 signed with the public key": (
        lambda keys: hs256_with_public_key(keys[0].public_pem, "alice"),
        "the token must be signed with RS256",
    ),
    "RS256 from another key": (
        lambda keys: keys[1].token("alice"),
        "the token's signature does not verify",
    ),
    "expired": (
        lambda keys: keys[0].token("alice", exp=int(time.time()) - 60),
        "the token has expired",
    ),
    "not yet valid": (
        lambda keys: keys[0].token("alice", nbf=int(time.time()) + 3600),
        "the token is not valid yet",
    ),
    "malformed": (lambda keys: "not-a-token", "the token is malformed"),
    "truncated": (
        lambda keys: keys[0].token("alice").rsplit(".", 1)[0],
        "the token is malformed",
    ),
    "signature cut short": (
        lambda keys: keys[0].token("alice")[:-2],
        "the token's signature does not verify",
    ),
    "without userid": (lambda keys: keys[0].token(None), "the token has no 'userid' claim"),
    "two algorithms, HS256 last": (
        lambda keys: forged_header_token('{"alg": "RS256", "alg": "HS256"}', keys[0]),
        "the token must be signed with RS256",
    ),
    "two algorithms, RS256 last": (
        lambda keys: forged_header_token('{"alg": "HS256", "alg": "RS256"}', keys[0]),
        "the token's signature does not verify",
    ),
    "algorithm as a list": (
        lambda keys: forged_header_token('{"alg": ["RS256", "HS256"]}', keys[0]),
        "the token must be signed with RS256",
    ),
    "lower-case rs256": (
        lambda keys: forged_header_token('{"alg": "rs256"}', keys[0]),
        "the token must be signed with RS256",
    ),
    "not a JWT at all": (lambda keys: "a.b.c", "the token is malformed"),
    "oversized": (
        lambda keys: keys[0].token("alice", padding="x" * 5000),
        "the token is longer than 4096 characters",
    ),
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
def test_tokens_that_must_fail_are_401(client, app, keypair, other_keypair, name):
    make_token, message = BAD_TOKENS[name]
    token = make_token((keypair, other_keypair))

    _rejected(upload(client, make_spec(), token), 401, message)
    assert stored_revisions(app) == []


def test_a_token_for_another_service_is_403(client, app, keypair):
    _rejected(
        upload(client, make_spec(), keypair.token("alice", service="rawstore")),
        403,
        "the token is for the service 'rawstore', not 'source'",
    )
    assert stored_revisions(app) == []


def test_a_token_without_a_service_claim_is_accepted(client, app, keypair):
    assert upload(client, make_spec(), keypair.token("alice", service=None)).status_code == 200


def test_exp_in_the_future_is_accepted(client, keypair):
    token = keypair.token("alice", exp=int(time.time()) + 600)
    assert upload(client, make_spec(), token).status_code == 200


def test_a_token_accepted_before_is_refused_once_it_expires(client, app, keypair):
    """A token is checked once while nothing but its key decides it; one with an expiry, each
    time."""
    expires = int(time.time()) + 2
    token = keypair.token("alice", exp=expires)
    assert upload(client, make_spec(), token).status_code == 200
    assert upload(client, make_spec(), token).status_code == 200
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    _rejected(upload(client, make_spec(), token), 401, "the token has expired")
    assert [row[2] for row in stored_revisions(app)] == [1, 2]


def test_the_key_is_fetched_from_the_auth_server_lazily_and_cached(make_app, keypair):
    with FakeAuthService(keypair.public_pem) as auth:
        app = make_app(auth_public_key=None, auth_server=auth.host)
        assert auth.requests == 0  # nothing fetched while the app is built
        client = app.test_client()

        for dataset in ("a", "b", "c"):
            response = upload(client, make_spec(dataset=dataset), keypair.token("alice"))
            assert response.status_code == 200, response.get_json()
        assert auth.requests == 1

        auth.up = False  # the last good key keeps working while the auth service is down
        assert upload(client, make_spec(dataset="d"), keypair.token("alice")).status_code == 200
    assert [row[1] for row in stored_revisions(app)] == ["a", "b", "c", "d"]


def test_uploads_are_503_until_the_key_can_be_had(make_app, keypair):
    with FakeAuthService(keypair.public_pem) as auth:
        auth.up = False
        app = make_app(
            auth_public_key=None, auth_server=auth.host, auth_key_refresh_interval=REFRESH_INTERVAL
        )
        client = app.test_client()

        response = upload(client, make_spec(), keypair.token("alice"))
        assert response.status_code == 503
        assert response.get_json() == {
            "success": False,
            "id": None,
            "errors": ["the auth service's public key cannot be had right now, try again shortly"],
            "error": {
                "status": 503,
                "message": (
                    "the auth service's public key cannot be had right now, try again shortly"
                ),
            },
        }
        assert stored_revisions(app) == []

        auth.up = True
        time.sleep(REFRESH_INTERVAL + 0.1)
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 200
    assert stored_revisions(app) == [("alice", "gdp", 1, "LOADED")]


def test_an_unreachable_auth_server_is_503_and_the_app_still_starts(make_app, keypair):
    from tests.support.net import free_port

    app = make_app(auth_public_key=None, auth_server=f"127.0.0.1:{free_port()}", auth_timeout=1)
    response = upload(app.test_client(), make_spec(), keypair.token("alice"))
    assert response.status_code == 503
    assert stored_revisions(app) == []
    # Reads do not need the key.
    assert app.test_client().get("/source/alice/gdp/status").status_code == 404


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_key_is_picked_up_at_most_once_per_interval(keypair, other_keypair):
    clock = _Clock()
    with FakeAuthService(keypair.public_pem) as auth:
        keys = RemotePublicKey(HttpClient(2), auth.host, ttl=3600, refresh_interval=30, clock=clock)
        first = keys.current()
        assert auth.requests == 1

        auth.public_key_pem = other_keypair.public_pem
        clock.now += 5
        assert keys.refreshed() is None  # too soon: no request at all
        assert auth.requests == 1

        clock.now += 30
        rotated = keys.refreshed()
        assert rotated is not None and rotated.public_numbers() != first.public_numbers()
        assert keys.current().public_numbers() == rotated.public_numbers()
        assert auth.requests == 2

        clock.now += 3600  # the TTL refetches too
        keys.current()
        assert auth.requests == 3


def test_a_token_from_a_rotated_key_verifies_after_one_refresh(make_app, keypair, other_keypair):
    with FakeAuthService(keypair.public_pem) as auth:
        app = make_app(
            auth_public_key=None, auth_server=auth.host, auth_key_refresh_interval=REFRESH_INTERVAL
        )
        client = app.test_client()
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 200

        auth.public_key_pem = other_keypair.public_pem
        time.sleep(REFRESH_INTERVAL + 0.1)
        response = upload(client, make_spec(), other_keypair.token("alice"))
        assert response.status_code == 200, response.get_json()
        assert auth.requests == 2

        # A forged token right after cannot make specstore fetch again.
        assert upload(client, make_spec(), keypair.token("alice")).status_code == 401
        assert auth.requests == 2
    assert [row[2] for row in stored_revisions(app)] == [1, 2]
