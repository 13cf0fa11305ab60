"""``specstore upload`` against a running server: followed to the end, refusals explained."""

from __future__ import annotations

from tests.support.api import make_spec, write_spec
from tests.support.pipelines import example_spec


def test_upload_follows_a_revision_to_the_end(start_server, example_data, tmp_path):
    """On the embedded defaults (local key pair, embedded runner): no token needed."""
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", OUTPUT_DIR=str(tmp_path))
    spec = write_spec(tmp_path / "spec.yaml", example_spec(example_data))
    done = server.run_cli("upload", spec, "--wait", "--url", server.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "uploaded alice/gdp/1: revision 1 of alice/gdp"
    assert lines[-1] == "SUCCEEDED"
    assert (tmp_path / "alice" / "gdp" / "gdp.sqlite").exists()

    quick = server.run_cli("upload", spec, "--url", server.url)
    assert quick.returncode == 0, quick.stderr
    assert quick.stdout.splitlines() == ["uploaded alice/gdp/2: revision 2 of alice/gdp"]


def test_upload_prints_every_reason_a_spec_is_refused(start_server, tmp_path):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    bad = make_spec(findability="secret")
    bad["outputs"].append({"kind": "ftp"})
    refused = server.run_cli("upload", write_spec(tmp_path / "bad.json", bad), "--url", server.url)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "meta.findability: 'secret' is not one of ['published', 'unlisted', 'private']",
        "outputs[2].kind: 'ftp' is not one of ['rdbms', 'sqlite', 'npm', 'zip']",
    ]


def test_upload_with_a_token_that_does_not_verify(start_server, tmp_path, other_keypair):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    spec = write_spec(tmp_path / "spec.yaml", make_spec())
    token = other_keypair.token("alice")
    refused = server.run_cli("upload", spec, "--url", server.url, "--token", token)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == ["the token's signature does not verify"]
