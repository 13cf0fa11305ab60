"""The npm output: a processed data package as an npm package, packed and published by npm.

The step ``specstore.npm_publish`` runs once the data package is complete in the run's
staging folder (``source``: what ``specstore.package`` finished) and

1. copies it into ``<out-path>/package/``;
2. adds a ``package.json`` (the name and version the plan gives: the version is
   the revision's number, so every revision is a new version) and a
   ``README.md`` generated from the descriptor (with the data package's own README);
3. packs it with ``npm pack`` into ``<out-path>/<name>-<version>.tgz``;
4. publishes the tarball with ``npm publish`` when the plan names credentials.
   The registry and its token are read from the environment of the process
   running the step (``NPM_<NAME>_REGISTRY``, ``NPM_<NAME>_TOKEN``), never from
   the plan, and handed to npm in a private, temporary user config file.

A failure raises :class:`NpmError` with npm's own message, after the steps
before it (the other outputs) have finished. It needs only the standard
library, dataflows and the npm client, so it runs the same in specstore's
embedded runner and in DPP's virtualenv.

Package names are one-to-one with datasets (:func:`package_name`), so two owners'
datasets can never share one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .lifetime import die_with_parent

PROCESSOR = "specstore.npm_publish"
PACKAGE_DIR = "package"
NPM_TIMEOUT_SECONDS = 300
NAME_MAX_LENGTH = 214
_SPDX_ID = re.compile(r"^[A-Za-z0-9.+-]+$")
_KEPT = re.compile(r"[a-z0-9.]")

log = logging.getLogger("npm")


class NpmError(Exception):
    """The package could not be packed or published; the message is npm's."""


def package_name(owner_id: str, dataset: str, scope: str | None = None) -> str:
    """The npm package of a dataset: ``<owner>-<dataset>``, one-to-one.

    npm names are lower-case letters, digits, ``.``, ``-`` and ``_``. Lower-case
    letters, digits and ``.`` are kept; every other character is written ``_`` and its
    code in two hex digits (``A`` is ``_41``, ``_`` is ``_5f``), and so is ``-`` in the
    owner id, never in the dataset: the first ``-`` of a name is always the one between
    owner and dataset, and a name can be read back into exactly one pair. The usual
    names stay as they are (``alice`` + ``gdp`` is ``alice-gdp``), while ``mallory`` +
    ``corp-data`` is ``mallory-corp-data`` and ``mallory-corp`` + ``data`` is
    ``mallory_2dcorp-data``.
    """
    name = f"{_escaped(owner_id, '')}-{_escaped(dataset, '-')}"
    return f"@{scope}/{name}" if scope else name


def _escaped(text: str, also_kept: str) -> str:
    return "".join(
        character if _KEPT.match(character) or character in also_kept else f"_{ord(character):02x}"
        for character in text
    )


def name_problem(name: str) -> str | None:
    """Why npm would refuse ``name`` (its scope aside), or None."""
    bare = name.rsplit("/", 1)[-1]
    if len(name) > NAME_MAX_LENGTH:
        return f"the npm package name {name!r} is longer than {NAME_MAX_LENGTH} characters"
    if bare.startswith((".", "_")):
        return f"the npm package name {name!r} would start with {bare[0]!r}, which npm refuses"
    return None


def steps(parameters: dict[str, Any]) -> list[Any]:
    """The dataflows steps of the npm output, for ``Flow(*steps(parameters))``."""
    from dataflows import finalizer

    return [finalizer(lambda: build(parameters))]


def build(parameters: dict[str, Any]) -> Path:
    """Copy, complete, pack and (if asked) publish the package; the tarball's path."""
    staging = Path(parameters["out-path"]) / PACKAGE_DIR
    # Nothing of an earlier attempt may end up in this one.
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(parameters["source"], staging, symlinks=True)
    descriptor = json.loads((staging / "datapackage.json").read_text(encoding="utf-8"))
    package = package_json(descriptor, parameters)
    (staging / "package.json").write_text(json.dumps(package, indent=2) + "\n", encoding="utf-8")
    (staging / "README.md").write_text(readme(descriptor, parameters), encoding="utf-8")
    tarball = pack(staging, staging.parent)
    log.info("npm: packed %s@%s into %s", package["name"], package["version"], tarball.name)
    if parameters.get("credentials"):
        publish(tarball, parameters)
    else:
        log.info("npm: no credentials named, so the package is not published")
    return tarball


def package_json(descriptor: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    data_files = sorted(
        {
            resource["path"]
            for resource in descriptor.get("resources") or []
            if isinstance(resource, dict) and isinstance(resource.get("path"), str)
        }
    )
    keywords = [keyword for keyword in descriptor.get("keywords") or [] if isinstance(keyword, str)]
    package: dict[str, Any] = {
        "name": parameters["name"],
        "version": parameters["version"],
        "description": _text(descriptor.get("description"))
        or _text(descriptor.get("title"))
        or f"The data package {parameters['dataset']}",
        "keywords": ["datapackage", "data", *keywords],
        # require('<name>') gives the descriptor; the data files sit beside it.
        "main": "datapackage.json",
        "files": ["datapackage.json", "README.md", *data_files],
    }
    license = _license(descriptor)
    if license:
        package["license"] = license
    if isinstance(descriptor.get("homepage"), str):
        package["homepage"] = descriptor["homepage"]
    return package


def readme(descriptor: dict[str, Any], parameters: dict[str, Any]) -> str:
    name = parameters["name"]
    title = _text(descriptor.get("title")) or parameters["dataset"]
    lines = [f"# {title}", ""]
    description = _text(descriptor.get("description"))
    if description:
        lines += [description, ""]
    own = descriptor.get("readme")
    if isinstance(own, str) and own.strip():
        lines += [own.strip(), ""]
    lines += [
        f"The data package `{parameters['dataset']}`, revision {parameters['revision']}, "
        "as an npm package: its descriptor (`datapackage.json`) and its data files.",
        "",
        "## Data",
        "",
        "| resource | file | rows | fields |",
        "| --- | --- | ---: | --- |",
    ]
    for resource in descriptor.get("resources") or []:
        if not isinstance(resource, dict):
            continue
        fields = (resource.get("schema") or {}).get("fields") or []
        columns = ", ".join(
            f"{field.get('name')} ({field.get('type', 'any')})"
            for field in fields
            if isinstance(field, dict)
        )
        rows = resource.get("count_of_rows")
        lines.append(
            f"| {resource.get('name', '')} | `{resource.get('path', '')}` | "
            f"{'' if rows is None else rows} | {columns} |"
        )
    first = next(
        (
            resource.get("path")
            for resource in descriptor.get("resources") or []
            if isinstance(resource, dict) and resource.get("path")
        ),
        None,
    )
    lines += [
        "",
        "## Use",
        "",
        "```js",
        f"const datapackage = require('{name}');  // the descriptor",
    ]
    if first:
        lines.append(f"const csvPath = require.resolve('{name}/{first}');")
    lines += ["```", ""]
    licenses = [
        licence for licence in descriptor.get("licenses") or [] if isinstance(licence, dict)
    ]
    if licenses:
        lines += ["## License", ""]
        for licence in licenses:
            label = _text(licence.get("title")) or _text(licence.get("name")) or "license"
            path = licence.get("path")
            lines.append(f"- [{label}]({path})" if isinstance(path, str) else f"- {label}")
        lines.append("")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _license(descriptor: dict[str, Any]) -> str | None:
    licenses = [item for item in descriptor.get("licenses") or [] if isinstance(item, dict)]
    if not licenses:
        return None
    name = licenses[0].get("name")
    if len(licenses) == 1 and isinstance(name, str) and _SPDX_ID.match(name):
        return name
    return "SEE LICENSE IN README.md"


# -- npm ---------------------------------------------------------------------------------


def pack(staging: Path, destination: Path) -> Path:
    """``npm pack`` of ``staging`` into ``destination``; the tarball's path."""
    result = _npm(["pack", "--json", "--pack-destination", str(destination)], cwd=staging)
    try:
        filename = json.loads(result.stdout)[0]["filename"]
    except (ValueError, LookupError, TypeError):
        raise NpmError(f"npm pack did not say what it wrote: {result.stdout.strip()}") from None
    return destination / filename


def publish(tarball: Path, parameters: dict[str, Any]) -> None:
    name, version = parameters["name"], parameters["version"]
    credentials = str(parameters["credentials"]).upper()
    registry = os.environ.get(f"NPM_{credentials}_REGISTRY", "").strip()
    token = os.environ.get(f"NPM_{credentials}_TOKEN", "").strip()
    if not registry or not token:
        raise NpmError(
            f"the npm credentials {credentials} are not configured where this pipeline runs: "
            f"set NPM_{credentials}_REGISTRY and NPM_{credentials}_TOKEN"
        )
    registry = registry.rstrip("/") + "/"
    with tempfile.TemporaryDirectory(prefix="specstore-npm-") as home:
        userconfig = Path(home) / "npmrc"
        # The token never appears on a command line or in the plan: only in this file.
        descriptor = os.open(userconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(f"{_nerf_dart(registry)}:_authToken={token}\n")
        command = ["publish", str(tarball), "--registry", registry, "--ignore-scripts"]
        if name.startswith("@"):
            command += ["--access", parameters.get("access", "public")]
        try:
            _npm(command, cwd=Path(home), userconfig=userconfig)
        except NpmError as exc:
            if _published_already(tarball, name, version, registry, userconfig):
                log.info("npm: %s@%s is already in %s, the same tarball", name, version, registry)
                return
            raise NpmError(f"publishing {name}@{version} to {registry} failed: {exc}") from None
    log.info("npm: published %s@%s to %s", name, version, registry)


def _published_already(
    tarball: Path, name: str, version: str, registry: str, userconfig: Path
) -> bool:
    """True when the registry holds this very tarball as ``name@version`` (a run done
    again, after a restart say): publishing it again is then not a failure."""
    try:
        result = _npm(
            ["view", f"{name}@{version}", "dist.shasum", "--json", "--registry", registry],
            cwd=userconfig.parent,
            userconfig=userconfig,
        )
        published = json.loads(result.stdout or "null")
    except (NpmError, ValueError):
        return False
    return published == hashlib.sha1(tarball.read_bytes()).hexdigest()  # noqa: S324 (npm's own sum)


def _nerf_dart(registry: str) -> str:
    """The registry as npm keys its credentials: ``//host[:port]/path/``."""
    parts = urlsplit(registry)
    return f"//{parts.netloc}{parts.path}"


def _npm(command: list[str], cwd: Path, userconfig: Path | None = None) -> Any:
    executable = shutil.which("npm")
    if executable is None:
        raise NpmError("the npm client (npm) is not installed where this pipeline runs")
    with tempfile.TemporaryDirectory(prefix="specstore-npm-cache-") as cache:
        env = {
            # The registry credentials of the service stay out of npm's environment.
            **{key: value for key, value in os.environ.items() if not _npm_credential(key)},
            "npm_config_cache": cache,
            "npm_config_userconfig": str(userconfig or Path(cache) / "npmrc"),
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
        }
        try:
            result = subprocess.run(  # noqa: S603 (npm, with arguments built here)
                [executable, *command],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_SECONDS,
                check=False,
                # npm goes when the pipeline's process goes (killed at its deadline, or
                # with the server that started it).
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired:
            raise NpmError(f"npm {command[0]} took longer than {NPM_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        raise NpmError(_npm_message(result.stderr) or f"npm {command[0]} failed")
    return result


def _npm_credential(key: str) -> bool:
    upper = key.upper()
    return (
        upper.startswith("NPM_")
        and upper.endswith(("_TOKEN", "_REGISTRY", "_SCOPE"))
        and (not upper.startswith("NPM_CONFIG_"))
    )


def _npm_message(stderr: str) -> str:
    """npm's error lines, without its prefix and its pointers to a log file."""
    lines = []
    for line in stderr.splitlines():
        text = re.sub(r"^npm (error|ERR!)\s*", "", line.strip())
        if text and text != line.strip() and "complete log of this run" not in text:
            lines.append(text)
    return "; ".join(lines) or " ".join(stderr.split())[-500:]
