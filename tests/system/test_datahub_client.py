"""The DataHub client is the judge of compatibility: its real library pushes to specstore.

``datahub-client`` 0.5.8 (pinned in npm-tools/package-lock.json) runs in Node.js, driven
by ``tests/support/datahub-push.js`` the way ``data push`` and ``data push-flow`` drive it,
against ``python server.py`` behind a loopback stand-in for the hub's auth and rawstore
(``tests/support/hub.py``, which forwards ``/source/*`` unchanged). What the client prints
is asserted, then what specstore made of the push: declared types in SQLite, files that
are not tables byte for byte, the README and every descriptor property kept.

The specs the client sent are then replayed to specstore on a real DPP 2.2.11, which must
make the same outputs from them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests

from tests.support.api import HOOK_SECRET
from tests.support.dpp import DppDeployment, DppUnavailable, dpp_venv
from tests.support.hub import Hub
from tests.support.net import StaticFiles
from tests.support.pipelines import HANDED_OVER, files_under, sqlite_tables, wait_for
from tests.support.s3 import BUCKET, MotoServer
from tests.support.server import ROOT, Server, server_env
from tests.support.tokens import KeyPair

PUSH = ROOT / "tests" / "support" / "datahub-push.js"
NPM_TOOLS = Path(os.environ.get("SPECSTORE_NPM_TOOLS") or ROOT / "npm-tools")
OWNER = "alice"
DOMAIN = "https://datahub.test"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n\x00\x01 trailer\n%%EOF\n"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to run the DataHub client (apt-get install nodejs)")
    client = NPM_TOOLS / "node_modules" / "datahub-client"
    if not client.exists():
        pytest.fail("no datahub-client in npm-tools: run `make npm-tools`", pytrace=False)
    return node


class Pushed:
    """What one run of the client printed, and the spec it sent."""

    def __init__(self, result: subprocess.CompletedProcess[str], spec: dict[str, Any] | None):
        self.returncode = result.returncode
        self.printed = result.stdout.strip().splitlines()
        self.stderr = result.stderr
        self.spec = spec


class Stack:
    """specstore (embedded runner) behind the hub stand-in, and the client pointed at it."""

    def __init__(self, root: Path, keypair: KeyPair, **env: str) -> None:
        self.root = root
        self.output = root / "output"
        self.server = Server(
            server_env(
                DATABASE_URL=f"sqlite:///{root}/registry.db",
                AUTH_PUBLIC_KEY=keypair.public_pem,
                HOOK_SECRET=HOOK_SECRET,
                OUTPUT_DIR=str(self.output),
                INPUT_URL_ALLOW="127.0.0.1",
                **env,
            ),
            root,
        )
        self.hub = Hub(self.server.url, keypair, OWNER).__enter__()
        self.keypair = keypair

    def push(self, command: str, folder: Path, **options: Any) -> Pushed:
        before = len(self.hub.specs)
        env = {
            **os.environ,
            "HUB_URL": self.hub.url,
            "HUB_TOKEN": "a-login-token",
            "HUB_OWNERID": OWNER,
            "HUB_OWNER": "Alice",
        }
        result = subprocess.run(
            [_node(), str(PUSH), command, str(folder), json.dumps(options)],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        spec = self.hub.specs[-1] if len(self.hub.specs) > before else None
        return Pushed(result, spec)

    def status(self, dataset: str, token: str | None = None) -> requests.Response:
        headers = {"Auth-Token": token} if token else {}
        return requests.get(
            f"{self.server.url}/source/{OWNER}/{dataset}/status", headers=headers, timeout=30
        )

    def finish(self, dataset: str, token: str | None = None) -> dict[str, Any]:
        return wait_for(lambda: self.status(dataset, token).json(), timeout=120)

    def outputs(self, dataset: str) -> Path:
        return self.output / OWNER / dataset

    def close(self) -> None:
        self.hub.__exit__()
        self.server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, keypair: KeyPair) -> Iterator[Stack]:
    _node()
    root = tmp_path_factory.mktemp("datahub-client")
    running = Stack(root, keypair)
    yield running
    running.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticFiles]:
    """Data on a web server of its own (a flow file's resource-mapping points at it)."""
    root = tmp_path_factory.mktemp("served")
    (root / "rates.csv").write_text(
        "Exchange rates\nsource: a bank\ncurrency,rate\nEUR,1.0\nUSD,1.1\n"
    )
    # The DataHub client's own dp-remote-resource fixture's table (sample.csv).
    (root / "sample.csv").write_text("number,word\n1,one\n2,two\n")
    with StaticFiles(str(root)) as files:
        yield files


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory, served: StaticFiles) -> Path:
    """The data packages a DataHub user would push, as files on disk."""
    root = tmp_path_factory.mktemp("packages")

    codes = root / "codes"
    (codes / "data").mkdir(parents=True)
    (codes / "data" / "codes.csv").write_text("code,year,value\n007,2019,1.5\n042,2020,2\n")
    (codes / "report.pdf").write_bytes(PDF)
    (codes / "meta.json").write_text('{"source": "survey", "rows": [1, 2]}\n')
    (codes / "map.geojson").write_text('{"type": "FeatureCollection", "features": []}\n')
    _descriptor(
        codes,
        name="codes",
        title="Codes",
        readme="# Codes\n\nWhere the codes come from.",
        views=[{"name": "graph", "specType": "simple", "spec": {"type": "line"}}],
        license="ODC-PDDL-1.0",
        custom={"anything": ["kept"]},
        resources=[
            {
                "name": "codes",
                "path": "data/codes.csv",
                "title": "The codes",
                "schema": {
                    "fields": [
                        {"name": "code", "type": "string"},
                        {"name": "year", "type": "year"},
                        {"name": "value", "type": "number"},
                    ]
                },
            },
            {"name": "report", "path": "report.pdf"},
            {"name": "meta", "path": "meta.json"},
            {"name": "map", "path": "map.geojson"},
        ],
    )

    sheets = root / "sheets"
    sheets.mkdir()
    book = openpyxl.Workbook()
    book.active.title = "first"
    book.active.append(["country", "count"])
    book.active.append(["France", 3])
    book.active.append(["Italy", 4])
    second = book.create_sheet("second")
    second.append(["city", "people"])
    second.append(["Paris", 2148000])
    book.save(sheets / "book.xlsx")
    (sheets / "plain.csv").write_text("a,b\n1,x\n")
    _descriptor(
        sheets,
        name="sheets",
        resources=[
            {"name": "book", "path": "book.xlsx", "format": "xlsx"},
            {"name": "plain", "path": "plain.csv"},
        ],
    )

    secret = root / "secret"
    secret.mkdir()
    (secret / "data.csv").write_text("a,b\n1,2\n")
    _descriptor(secret, name="secret", resources=[{"name": "data", "path": "data.csv"}])

    empty = root / "readme-only"
    empty.mkdir()
    (empty / "README.md").write_text("# Only a README\n\nNothing else " + "is here. " * 200_000)
    _descriptor(empty, name="readme-only", title="Only a README", resources=[])

    text = root / "accents"
    text.mkdir()
    head = "".join(f"city-{number},{number}\n" for number in range(80_000))
    (text / "cities.csv").write_text(
        "city,number\n" + head + "Zürich,1\nKraków,2\nSão Paulo,3\n", encoding="utf-8"
    )
    _descriptor(text, name="accents", resources=[{"name": "cities", "path": "cities.csv"}])

    # The client's own test package dp-remote-resource, as it is but for where its one
    # resource lives: a remote table with "schema": {}.
    fixture = NPM_TOOLS / "node_modules/datahub-client/test/fixtures/dp-remote-resource"
    remote = root / "remote"
    remote.mkdir()
    descriptor = json.loads((fixture / "datapackage.json").read_text())
    descriptor["resources"][0]["path"] = f"{served.url}sample.csv"
    _descriptor(remote, **descriptor)

    bad = root / "bad"
    bad.mkdir()
    (bad / "data.csv").write_text("a\n1\n")
    _descriptor(bad, name="bad name!", resources=[{"name": "data", "path": "data.csv"}])

    huge = root / "huge"
    huge.mkdir()
    (huge / "README.md").write_text("x" * (17 * 1024 * 1024))
    _descriptor(huge, name="huge", resources=[])

    # `data push-flow`: a flow file (with ``skip_rows: 2``, an integer, as the client's own
    # fixture has it) and a datapackage.json in ``.datahub/``.
    flow = root / "rates" / ".datahub"
    flow.mkdir(parents=True)
    (flow / "flow.yaml").write_text(
        "meta:\n"
        "  dataset: rates\n"
        f"  ownerid: {OWNER}\n"
        "  owner: Alice\n"
        "  findability: public\n"
        "inputs:\n"
        "  - kind: datapackage\n"
        "    url: http://127.0.0.1:1/placeholder\n"
        "    parameters:\n"
        "      resource-mapping:\n"
        f"        rates: {served.url}rates.csv\n"
        "processing:\n"
        "  - input: rates\n"
        "    output: rates\n"
        "    tabulator:\n"
        "      skip_rows: 2\n"
        "outputs:\n"
        "  - kind: sqlite\n"
        "schedule: every 1d\n"
    )
    (flow / "datapackage.json").write_text(
        json.dumps({"name": "rates", "resources": [{"name": "rates", "path": "rates.csv"}]})
    )
    return root


def _descriptor(folder: Path, **descriptor: Any) -> None:
    (folder / "datapackage.json").write_text(json.dumps(descriptor, indent=2))


def _published(pushed: Pushed, dataset: str, revision: int = 1) -> None:
    """The client printed what `data push` prints for a successful push."""
    assert pushed.returncode == 0, (pushed.printed, pushed.stderr[-2000:])
    assert pushed.printed == [
        "🙌  your data is published!",
        f"🔗  {DOMAIN}/Alice/{dataset}/v/{revision}",
    ]


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(archive.namelist())


# -- push --------------------------------------------------------------------------------------


def test_a_package_with_a_schema_files_and_metadata_is_kept_faithfully(stack, packages):
    pushed = stack.push(
        "push", packages / "codes", findability="published", outputs={"zip": True, "sqlite": True}
    )
    _published(pushed, "codes")
    status = stack.finish("codes")
    assert status["state"] == "SUCCEEDED", status
    assert status["errors"] == []

    out = stack.outputs("codes")
    # Declared types, not re-inferred ones: the codes keep their leading zeros.
    table = sqlite_tables(out / "codes.sqlite")["codes"]
    assert table["columns"]["code"] == "TEXT"
    assert table["rows"] == [("007", 2019, 1.5), ("042", 2020, 2.0)]
    package = out / "datapackage"
    descriptor = json.loads((package / "datapackage.json").read_text())
    fields = descriptor["resources"][0]["schema"]["fields"]
    assert [(field["name"], field["type"]) for field in fields] == [
        ("code", "string"),
        ("year", "year"),
        ("value", "number"),
    ]
    # Every descriptor property is kept, the README beside it.
    source = json.loads((packages / "codes" / "datapackage.json").read_text())
    for key in ("title", "readme", "views", "license", "custom"):
        assert descriptor[key] == source[key], key
    assert descriptor["resources"][0]["title"] == "The codes"
    assert (package / "README.md").read_text() == source["readme"] + "\n"
    # Files that are not tables: byte for byte, and listed.
    assert (package / "report.pdf").read_bytes() == PDF
    assert (package / "meta.json").read_bytes() == (packages / "codes" / "meta.json").read_bytes()
    assert (package / "map.geojson").read_bytes() == (
        packages / "codes" / "map.geojson"
    ).read_bytes()
    listed = {resource["name"]: resource for resource in descriptor["resources"]}
    assert listed["report"]["path"] == "report.pdf"
    assert listed["report"]["bytes"] == len(PDF)
    assert listed["map"]["format"] == "geojson"
    assert not (package / "map.csv").exists()
    assert _zip_names(out / "dataset.zip") == [
        "README.md",
        "codes.csv",
        "datapackage.json",
        "map.geojson",
        "meta.json",
        "report.pdf",
    ]

    # Published in the hub's shape, read back over HTTP as a front end would.
    published = requests.get(status["datapackage_url"], timeout=30).json()
    types = {res["name"]: res["datahub"]["type"] for res in published["resources"]}
    assert types == {
        "codes": "source/tabular",
        "codes_csv": "derived/csv",
        "codes_json": "derived/json",
        "report": "source/non-tabular",
        "meta": "source/non-tabular",
        "map": "source/non-tabular",
        "validation_report": "derived/report",
        "codes_zip": "derived/zip",
    }
    for key in ("title", "readme", "license", "custom"):
        assert published[key] == source[key], key
    by_name = {res["name"]: res for res in published["resources"]}
    assert requests.get(by_name["report"]["path"], timeout=30).content == PDF
    assert requests.get(by_name["codes_json"]["path"], timeout=30).json() == [
        {"code": "007", "value": 1.5, "year": 2019},
        {"code": "042", "value": 2.0, "year": 2020},
    ]
    assert published["datahub"]["owner"] == "Alice"
    assert published["datahub"]["stats"]["rowcount"] == 2


def test_every_sheet_of_a_workbook_with_the_schema_the_client_infers(stack, packages):
    pushed = stack.push(
        "push", packages / "sheets", findability="published", sheets="all", outputs={"sqlite": True}
    )
    _published(pushed, "sheets")
    # The client sends one processing step per sheet, with the schema it inferred
    # (its integers made numbers, as Excel holds them).
    steps = {step["output"]: step for step in pushed.spec["processing"]}
    assert sorted(steps) == ["book-sheet-1", "book-sheet-2"]
    assert steps["book-sheet-2"]["schema"]["fields"][1]["type"] == "number"
    status = stack.finish("sheets")
    assert status["state"] == "SUCCEEDED", status
    tables = sqlite_tables(stack.outputs("sheets") / "sheets.sqlite")
    assert tables["book-sheet-1"]["rows"] == [("France", 3.0), ("Italy", 4.0)]
    assert tables["book-sheet-1"]["columns"]["count"] == "FLOAT"
    assert tables["book-sheet-2"]["rows"] == [("Paris", 2148000.0)]
    assert tables["plain"]["rows"] == [(1, "x")]


def test_a_private_push_is_the_owners_only(stack, packages, keypair):
    pushed = stack.push("push", packages / "secret", findability="private")
    _published(pushed, "secret")
    assert pushed.spec["meta"]["findability"] == "private"
    status = stack.finish("secret", token=keypair.token(OWNER))
    assert status["state"] == "SUCCEEDED", status
    assert stack.status("secret").status_code == 404


def test_a_package_with_no_resources_succeeds_with_its_readme(stack, packages):
    """The client's own tests push exactly this; the README here is over 1 MiB, as real
    ones may be (the spec carries it inline)."""
    pushed = stack.push("push", packages / "readme-only", findability="published")
    _published(pushed, "readme-only")
    status = stack.finish("readme-only")
    assert status["state"] == "SUCCEEDED", status
    package = stack.outputs("readme-only") / "datapackage"
    readme = (packages / "readme-only" / "README.md").read_text()
    assert len(readme) > 1024 * 1024
    descriptor = json.loads((package / "datapackage.json").read_text())
    assert descriptor["resources"] == []
    assert descriptor["title"] == "Only a README"
    assert (package / "README.md").read_text().rstrip("\n") == readme.rstrip("\n")


def test_a_wrong_encoding_guess_is_overruled_by_the_whole_file(stack, packages):
    """The client guesses the encoding from the first megabyte; this file's first
    megabyte is plain ASCII and its last lines are UTF-8."""
    pushed = stack.push(
        "push", packages / "accents", findability="published", outputs={"sqlite": True}
    )
    _published(pushed, "accents")
    declared = pushed.spec["inputs"][0]["parameters"]["descriptor"]["resources"][0]
    status = stack.finish("accents")
    assert status["state"] == "SUCCEEDED", status
    rows = sqlite_tables(stack.outputs("accents") / "accents.sqlite")["cities"]["rows"]
    names = {row[0] for row in rows}
    assert {"Zürich", "Kraków", "São Paulo"} <= names
    assert not any("Ã" in name for name in names)
    if declared.get("encoding", "utf-8").lower() not in ("utf-8", "utf8", "ascii"):
        assert any("read as UTF-8" in line for line in status["logs"]), status["logs"]


def test_the_user_sees_specstores_reason_when_a_push_is_refused(stack, packages):
    pushed = stack.push("push", packages / "bad", findability="published")
    assert pushed.returncode == 1
    assert pushed.printed == [
        "> Error! meta.dataset: 'bad name!' does not match: A safe path segment: letters, "
        "digits, '.', '_', '-'; not '.' or '..'."
    ]
    assert stack.status("bad name!").status_code == 404


def test_the_user_sees_why_a_push_is_too_large(stack, packages):
    pushed = stack.push("push", packages / "huge", findability="published")
    assert pushed.returncode == 1
    assert pushed.printed == [
        "> Error! the body is larger than 16777216 bytes (MAX_CONTENT_LENGTH)"
    ]
    assert stack.status("huge").status_code == 404


# -- push-flow ---------------------------------------------------------------------------------


def test_a_remote_resource_with_an_empty_schema_has_its_types_inferred(stack, packages):
    """The client's dp-remote-resource says ``"schema": {}``: no schema given."""
    pushed = stack.push("push", packages / "remote", findability="published")
    _published(pushed, "dp-no-resources")
    status = stack.finish("dp-no-resources")
    assert status["state"] == "SUCCEEDED", status
    assert any(
        "resource sample: no schema given: its types are inferred" in line
        for line in status["logs"]
    )
    descriptor = json.loads(
        (stack.outputs("dp-no-resources") / "datapackage" / "datapackage.json").read_text()
    )
    (table,) = [one for one in descriptor["resources"] if one["name"] == "sample"]
    assert [(field["name"], field["type"]) for field in table["schema"]["fields"]] == [
        ("number", "integer"),
        ("word", "string"),
    ]


def test_push_flow_with_a_flow_file(stack, packages):
    """``data push-flow`` sends the flow file as the spec (the CLI then reads
    ``dataset_id`` from the answer to name the dataset)."""
    pushed = stack.push("push-flow", packages / "rates")
    _published(pushed, "rates")
    assert pushed.spec["processing"][0]["tabulator"] == {"skip_rows": 2}
    status = stack.finish("rates")
    assert status["state"] == "SUCCEEDED", status
    assert sqlite_tables(stack.outputs("rates") / "rates.sqlite")["rates"]["rows"] == [
        ("EUR", 1.0),
        ("USD", 1.1),
    ]


# -- the same specs on DPP ---------------------------------------------------------------------


# Every push above that succeeds: (package, command, options).
PUSHES = [
    ("codes", "push", {"findability": "published", "outputs": {"zip": True, "sqlite": True}}),
    ("sheets", "push", {"findability": "published", "sheets": "all", "outputs": {"sqlite": True}}),
    ("secret", "push", {"findability": "private", "outputs": {"zip": True}}),
    ("readme-only", "push", {"findability": "published"}),
    ("accents", "push", {"findability": "published", "outputs": {"sqlite": True}}),
    ("rates", "push-flow", {}),
]


@pytest.fixture(scope="module")
def dpp_stack(tmp_path_factory: pytest.TempPathFactory, keypair: KeyPair) -> Iterator[Any]:
    try:
        venv = dpp_venv()
    except DppUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    root = tmp_path_factory.mktemp("datahub-client-dpp")
    dpp = DppDeployment(root / "dpp", venv)
    running = Stack(root, keypair, DPP_PIPELINES_DIR=str(dpp.root))
    yield running, dpp
    running.close()
    dpp.stop()


@pytest.mark.parametrize(("package", "command", "options"), PUSHES, ids=[p[0] for p in PUSHES])
def test_dpp_makes_the_same_outputs_from_the_same_push(
    stack, dpp_stack, packages, keypair, package, command, options
):
    """The same push to specstore on a real DPP (``dpp run``): the same outputs, file for
    file and row for row, as on the embedded runner."""
    on_dpp, dpp = dpp_stack
    token = keypair.token(OWNER)
    results = {}
    for name, target in (("embedded", stack), ("dpp", on_dpp)):
        pushed = target.push(command, packages / package, **options)
        assert pushed.returncode == 0, (pushed.printed, pushed.stderr[-2000:])
        dataset = pushed.spec["meta"]["dataset"]
        if name == "dpp":
            handed = wait_for(
                lambda target=target, dataset=dataset: target.status(dataset, token).json(),
                states=HANDED_OVER,
            )
            assert handed["state"] == "REGISTERED", handed
            ran = dpp.run(f"{OWNER}/{dataset}")
            assert ran.returncode == 0, ran.stdout[-3000:]
        status = target.finish(dataset, token)
        assert status["state"] == "SUCCEEDED", (name, status)
        results[name] = _comparable(target.outputs(dataset))
        # The publication: the same resources, and the same bytes of the data (the report
        # and the zip name the source's URL, the hub stand-in's own on each stack).
        results[name]["published"] = [
            (o["name"], o["type"], o["format"])
            + ((o["hash"],) if o["type"] not in ("derived/report", "derived/zip") else ())
            for o in status["outputs"]
        ]
        assert status["validation"]["valid"] is True
    assert results["dpp"] == results["embedded"]


def _comparable(folder: Path) -> dict[str, Any]:
    """A dataset's outputs as the same on both engines: every file of the package, the
    SQLite tables, the zips' member names."""
    found: dict[str, Any] = {"package": files_under(folder / "datapackage")}
    for sqlite in folder.glob("*.sqlite"):
        found[sqlite.name] = sqlite_tables(sqlite)
    for archive in folder.glob("*.zip"):
        found[archive.name] = _zip_names(archive)
    return found


# -- published to a bucket ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory, keypair: KeyPair) -> Iterator[Any]:
    """specstore publishing to a real S3 server (moto's), the client pushing to it."""
    root = tmp_path_factory.mktemp("datahub-client-s3")
    moto = MotoServer(root / "moto.log")
    running = Stack(root, keypair, **moto.settings(prefix="pkgstore"))
    yield running, moto
    running.close()
    moto.stop()


def test_a_push_is_published_to_the_bucket(s3_stack, packages, keypair):
    stack, moto = s3_stack
    pushed = stack.push("push", packages / "codes", findability="published")
    _published(pushed, "codes")
    status = stack.finish("codes")
    assert status["state"] == "SUCCEEDED", status
    stored = moto.keys("pkgstore/alice/codes/")
    assert "pkgstore/alice/codes/1/datapackage.json" in stored
    published = json.loads(stored["pkgstore/alice/codes/1/datapackage.json"])
    for resource in published["resources"]:
        # Anyone reads a published dataset's objects, with no credentials at all.
        answer = requests.get(resource["path"], timeout=30)
        assert answer.status_code == 200, resource["name"]
        assert answer.content == stored[resource["path"].split(f"/{BUCKET}/", 1)[1]]
    by_name = {resource["name"]: resource for resource in published["resources"]}
    assert requests.get(by_name["report"]["path"], timeout=30).content == PDF
    assert by_name["codes_csv"]["datahub"] == {"type": "derived/csv", "derivedFrom": ["codes"]}

    private = stack.push("push", packages / "secret", findability="private")
    assert private.returncode == 0, (private.printed, private.stderr[-2000:])
    secret = stack.finish("secret", token=keypair.token(OWNER))
    assert secret["state"] == "SUCCEEDED", secret
    for output in secret["outputs"]:
        assert requests.get(output["url"].split("?")[0], timeout=30).status_code == 403
        assert requests.get(output["url"], timeout=30).status_code == 200  # presigned
