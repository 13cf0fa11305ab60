"""The ``specstore`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import jwt
import yaml
from click.testing import CliRunner

from specstore.cli import main
from tests.conftest import make_spec
from tests.support.pipelines import example_spec


def _write(path, spec):
    path.write_text(yaml.safe_dump(spec) if path.suffix != ".json" else json.dumps(spec))
    return str(path)


def test_validate_accepts_valid_yaml_and_json(tmp_path):
    files = [_write(tmp_path / "a.yaml", make_spec()), _write(tmp_path / "b.json", make_spec())]
    result = CliRunner().invoke(main, ["validate", *files])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{files[0]}: valid", f"{files[1]}: valid"]


def test_validate_reports_every_error_with_its_path_and_fails(tmp_path):
    bad = make_spec(findability="secret")
    del bad["meta"]["ownerid"]
    good = _write(tmp_path / "good.yml", make_spec())
    broken = _write(tmp_path / "bad.yaml", bad)
    unparsable = tmp_path / "worse.json"
    unparsable.write_text("{")
    result = CliRunner().invoke(main, ["validate", good, broken, str(unparsable)])

    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert f"{broken}: meta: 'ownerid' is a required property" in errors
    assert any(line.startswith(f"{broken}: meta.findability: 'secret'") for line in errors)
    assert any(line.startswith(f"{unparsable}: the body is not valid JSON") for line in errors)
    assert len(errors) == 3
    assert f"{good}: valid" in result.stdout


def test_validate_missing_file(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


def test_token_is_signed_with_the_local_key_pair(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "AUTH_SERVER": "", "AUTH_PUBLIC_KEY": ""}
    runner = CliRunner(env=env)
    first = runner.invoke(main, ["token", "alice"])
    second = runner.invoke(main, ["token", "bob", "--service", "other"])

    assert first.exit_code == 0, first.output
    assert jwt.get_unverified_header(first.stdout.strip())["alg"] == "RS256"
    claims = jwt.decode(first.stdout.strip(), options={"verify_signature": False})
    assert claims == {"userid": "alice", "permissions": {}, "service": "source"}
    other = jwt.decode(second.stdout.strip(), options={"verify_signature": False})
    assert other["service"] == "other"


def test_token_refuses_when_the_auth_service_issues_tokens(tmp_path, keypair):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/s.db", "AUTH_PUBLIC_KEY": keypair.public_pem}
    result = CliRunner(env=env).invoke(main, ["token", "alice"])
    assert result.exit_code == 1
    assert "tokens are issued by the auth service" in result.output


def test_bad_configuration_is_a_clear_error(tmp_path):
    result = CliRunner(env={"PORT": "eighty"}).invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "PORT='eighty'" in result.output


def test_db_upgrade_is_idempotent(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    for _ in range(2):
        result = CliRunner(env=env).invoke(main, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "database at head" in result.output


def test_python_dash_m_specstore_is_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "specstore", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for command in ("token", "validate", "db", "serve", "hook-token", "upload", "status"):
        assert command in result.stdout


def test_every_command_has_help():
    for command in (
        [],
        ["serve"],
        ["db"],
        ["db", "upgrade"],
        ["validate"],
        ["token"],
        ["hook-token"],
        ["status"],
        ["upload"],
    ):
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert result.output.startswith("Usage: ")


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"specstore, version {version('specstore')}"


def test_upload_follows_a_revision_to_the_end(start_server, example_data, tmp_path):
    """On the embedded defaults (local key pair, embedded runner): no token needed."""
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", OUTPUT_DIR=str(tmp_path))
    spec = _write(tmp_path / "spec.yaml", example_spec(example_data))
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
    refused = server.run_cli("upload", _write(tmp_path / "bad.json", bad), "--url", server.url)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "meta.findability: 'secret' is not one of ['published', 'unlisted', 'private']",
        "outputs[2].kind: 'ftp' is not one of ['rdbms', 'sqlite', 'npm', 'zip']",
    ]


def test_upload_with_a_token_that_does_not_verify(start_server, tmp_path, other_keypair):
    server = start_server(DATABASE_URL=f"sqlite:///{tmp_path}/s.db", RUNNER_WORKERS="0")
    spec = _write(tmp_path / "spec.yaml", make_spec())
    token = other_keypair.token("alice")
    refused = server.run_cli("upload", spec, "--url", server.url, "--token", token)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == ["the token's signature does not verify"]
