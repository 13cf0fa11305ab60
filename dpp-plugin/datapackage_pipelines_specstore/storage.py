"""Where a run's publication goes: one interface, two backends.

* :class:`LocalStorage`: a folder (``DATA_DIR``), which specstore serves at
  ``/data/<key>`` under the dataset's findability;
* :class:`S3Storage`: an S3-compatible bucket, through boto3, credentials from the
  standard AWS environment of the process that runs the step (never a parameter).

A key is ``<ownerid>/<dataset>/...``, made here from validated names only
(:func:`data_key`, :func:`descriptor_key`); a data object's key holds the MD5 of its
bytes, so the same bytes are stored once however many revisions publish them.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote

# What each published file is sent as.
CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".zip": "application/zip",
    ".md": "text/markdown; charset=utf-8",
    ".tsv": "text/tab-separated-values; charset=utf-8",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
}
# Parts and a part size that keep an upload's memory bounded whatever the file's size.
MULTIPART_BYTES = 16 * 1024 * 1024


class StorageError(Exception):
    """The storage cannot take or give an object; the message names the storage."""


def content_type(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _segment(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a key segment")
    return name


def data_key(owner_id: str, dataset: str, resource: str, md5: str, file_name: str) -> str:
    """``<ownerid>/<dataset>/<resource>/<md5>/<file>``: a data object, by its content."""
    parts = (owner_id, dataset, resource, md5, file_name)
    return "/".join(_segment(part) for part in parts)


def descriptor_key(owner_id: str, dataset: str, revision: int) -> str:
    """``<ownerid>/<dataset>/<revision>/datapackage.json``: a revision's publication."""
    return f"{_segment(owner_id)}/{_segment(dataset)}/{int(revision)}/datapackage.json"


class Storage(Protocol):
    def has(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    def put(self, key: str, path: Path, public: bool) -> None:
        """Store the file at ``path`` under ``key``, readable by anyone when ``public``."""

    def url(self, key: str) -> str:
        """Where the object under ``key`` is read."""

    def turn(self, owner_id: str, dataset: str, public: bool) -> None:
        """Every object of the dataset made readable by anyone (or not), if it is not yet."""

    def describe(self) -> str:
        """The storage, as an error names it (no credentials)."""


class LocalStorage:
    """A folder; each object written whole (a temporary file renamed), so a reader never
    finds one half written."""

    def __init__(self, root: str | Path, base_url: str) -> None:
        self.root = Path(root)
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"

    def path(self, key: str) -> Path:
        return self.root.joinpath(*(_segment(part) for part in key.split("/")))

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, path: Path, public: bool) -> None:
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".put-", dir=target.parent)
            with os.fdopen(handle, "wb") as out, path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
            os.replace(temporary, target)
        except OSError as exc:
            with contextlib.suppress(NameError, OSError):
                os.unlink(temporary)
            raise StorageError(
                f"{self.describe()}: {key} cannot be written ({exc.strerror})"
            ) from None

    def url(self, key: str) -> str:
        return self.base_url + quote(key)

    def turn(self, owner_id: str, dataset: str, public: bool) -> None:
        """Nothing: specstore serves the folder under the dataset's findability as it is
        when a file is asked for."""

    def describe(self) -> str:
        return "the data folder"


class S3Storage:
    """A bucket of an S3-compatible object store. Objects go up in parts of
    ``MULTIPART_BYTES`` (bounded memory), transient errors retried with backoff by
    botocore's standard retry mode."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url or None
        self.region = region or None
        base = public_url or (
            f"{self.endpoint_url.rstrip('/')}/{bucket}/"
            if self.endpoint_url
            else f"https://{bucket}.s3.amazonaws.com/"
        )
        self.public_url = base if base.endswith("/") else base + "/"
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Their debug lines hold each request's headers (the access key's id among
            # them), and DPP's processors log at debug: a run's log is shown to users.
            for name in ("boto3", "botocore", "s3transfer", "urllib3"):
                logging.getLogger(name).setLevel(logging.WARNING)

            config = Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                s3={"addressing_style": "path"},
                signature_version="s3v4",
            )
            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
            )
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + key

    def has(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except StorageError as exc:
            if isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) in (
                "404",
                "NoSuchKey",
            ):
                return False
            raise
        return True

    def put(self, key: str, path: Path, public: bool) -> None:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=MULTIPART_BYTES,
            multipart_chunksize=MULTIPART_BYTES,
            max_concurrency=2,
        )
        extra = {"ContentType": content_type(key), "ACL": "public-read" if public else "private"}
        with self._errors(key):
            self.client.upload_file(
                str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=transfer
            )

    def turn(self, owner_id: str, dataset: str, public: bool) -> None:
        """Every object of the dataset's made public (or private) when the dataset's last
        publication was the other way, as the object ``<ownerid>/<dataset>/findability``
        (a key no resource or revision has: theirs are deeper) remembers."""
        marker = f"{_segment(owner_id)}/{_segment(dataset)}/findability"
        wanted = b"public" if public else b"private"
        from botocore.exceptions import ClientError

        try:
            with self._errors(marker):
                answer = self.client.get_object(Bucket=self.bucket, Key=self._key(marker))
                current = answer["Body"].read()
        except StorageError as exc:
            if not (isinstance(exc.__cause__, ClientError) and _code(exc.__cause__) == "NoSuchKey"):
                raise
            current = None
        if current == wanted:
            return
        if current is not None:
            self.set_public(f"{owner_id}/{dataset}", public)
        with self._errors(marker):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(marker), Body=wanted, ACL="private"
            )

    def set_public(self, prefix: str, public: bool) -> int:
        """Every object under ``prefix`` made public (or private); how many there were."""
        acl = "public-read" if public else "private"
        count = 0
        with self._errors(prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/") + "/")
            )
            for page in pages:
                for item in page.get("Contents") or []:
                    self.client.put_object_acl(Bucket=self.bucket, Key=item["Key"], ACL=acl)
                    count += 1
        return count

    def url(self, key: str) -> str:
        return self.public_url + quote(self._key(key))

    def read(self, key: str) -> bytes:
        with self._errors(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def presigned_url(self, key: str, seconds: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=seconds
        )

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"the object storage (bucket {self.bucket}{where})"

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            raise StorageError(f"{self.describe()} refused {key}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            reason = exc.__class__.__name__
            raise StorageError(f"{self.describe()} cannot be reached for {key}: {reason}") from exc


def _code(exc: Any) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "error"))


def from_parameters(parameters: dict[str, Any]) -> LocalStorage | S3Storage:
    """The storage a plan names: ``{"kind": "local", "root", "base-url"}`` or
    ``{"kind": "s3", "bucket", "prefix", "endpoint-url", "public-url", "region"}``."""
    if parameters.get("kind") == "s3":
        return S3Storage(
            parameters["bucket"],
            parameters.get("prefix") or "",
            parameters.get("endpoint-url"),
            parameters.get("public-url"),
            parameters.get("region"),
        )
    return LocalStorage(parameters["root"], parameters["base-url"])
