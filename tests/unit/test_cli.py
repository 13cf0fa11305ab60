"""The ``specstore`` command line on its own: validate, token, db, help and version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import jwt
import pytest
from click.testing import CliRunner

from specstore.cli import main
from tests.support.api import make_spec, write_spec


def test_validate_accepts_valid_yaml_and_json(tmp_path):
    files = [
        write_spec(tmp_path / "a.yaml", make_spec()),
        write_spec(tmp_path / "b.json", make_spec()),
    ]
    result = CliRunner().invoke(main, ["validate", *files])

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{files[0]}: valid", f"{files[1]}: valid"]


def test_validate_reports_every_error_with_its_path_and_fails(tmp_path):
    bad = make_spec(findability="secret")
    del bad["meta"]["ownerid"]
    good = write_spec(tmp_path / "good.yml", make_spec())
    broken = write_spec(tmp_path / "bad.yaml", bad)
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


@pytest.mark.parametrize("findability", ["public", "publish", "published", "unlisted"])
def test_validate_reads_a_spec_as_the_server_does(tmp_path, findability):
    """The DataHub client's "public" is the server's "published": valid in both."""
    spec = write_spec(tmp_path / "spec.yaml", make_spec(findability=findability))
    result = CliRunner().invoke(main, ["validate", spec])
    assert (result.exit_code, result.stdout) == (0, f"{spec}: valid\n")


def test_upload_names_the_specs_own_problems_before_anything_else(tmp_path):
    """No owner in the spec: its problems, not a request for a token; nothing is sent
    (the server's address is one where nothing answers)."""
    bad = make_spec()
    del bad["meta"]["ownerid"]
    spec = write_spec(tmp_path / "spec.yaml", bad)
    env = {"SPECSTORE_URL": "http://127.0.0.1:9", "SPECSTORE_TOKEN": ""}
    result = CliRunner(env=env).invoke(main, ["upload", spec])
    assert result.exit_code == 1
    assert result.stderr == "meta: 'ownerid' is a required property\n"


@pytest.mark.parametrize("command", ["upload", "status"])
def test_a_server_that_does_not_answer_is_named_with_what_to_do(tmp_path, command):
    spec = write_spec(tmp_path / "spec.yaml", make_spec())
    arguments = [spec, "--token", "t"] if command == "upload" else ["alice/gdp"]
    env = {"SPECSTORE_URL": "http://127.0.0.1:9"}
    result = CliRunner(env=env).invoke(main, [command, *arguments])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: http://127.0.0.1:9 cannot be reached: no connection (connection refused). "
        "Is specstore running there? Start it with `make run`, or give its address as "
        "SPECSTORE_URL (or --url)\n"
    )


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


def test_db_upgrade_says_what_it_did_and_is_idempotent(tmp_path):
    from specstore.store.database import Database

    url = f"sqlite:///{tmp_path}/s.db"
    runner = CliRunner(env={"DATABASE_URL": url})
    head = _head()
    said = [runner.invoke(main, ["db", "upgrade"]) for _ in range(2)]
    assert [result.exit_code for result in said] == [0, 0]
    assert [result.output for result in said] == [
        f"database {url}: schema created (migrations up to {head})\n",
        f"database {url}: schema up to date (migration {head})\n",
    ]
    older = Database(url)
    older.downgrade("0009")
    older.dispose()
    again = runner.invoke(main, ["db", "upgrade"])
    assert again.output == f"database {url}: schema migrated from 0009 to {head}\n"


def _head() -> str:
    from alembic.script import ScriptDirectory

    from specstore.store.database import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


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
