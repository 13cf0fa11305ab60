"""A loopback stand-in for the rest of a DataHub, at the HTTP level, for the real client.

The DataHub client (``datahub-client``) talks to one API base URL. specstore serves
``/source/*``; the hub's other services are these stand-ins, just as much as the client
reads of them (``ecosystem.md``):

* ``GET /auth/authorize?service=<name>``: a permission token for the user, RS256 from the
  test key pair (the one specstore trusts) with ``service`` set;
* ``POST /rawstore/authorize``: for each file, where and how to upload it (S3-style);
* ``POST /rawstore/upload``: the S3-style multipart upload itself;
* ``GET /rawstore/presign?ownerid=&url=``: a signed URL the file can be read back from,
  served by ``GET /files/<key>?signature=``;
* ``/source/*``: forwarded to specstore unchanged (and the upload bodies recorded).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from .tokens import KeyPair


class Hub:
    def __init__(self, specstore_url: str, keypair: KeyPair, ownerid: str) -> None:
        self.specstore_url = specstore_url.rstrip("/")
        self.keypair = keypair
        self.ownerid = ownerid
        self.files: dict[str, bytes] = {}
        self.specs: list[dict[str, Any]] = []
        self._server = make_server("127.0.0.1", 0, self._app(), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Hub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def _signature(self, key: str) -> str:
        return hashlib.sha256(f"hub:{key}".encode()).hexdigest()[:16]

    def _app(self) -> Flask:
        app = Flask("hub")
        # Descriptors arrive as form fields, READMEs inlined: no size limit here.
        app.config["MAX_FORM_MEMORY_SIZE"] = None
        hub = self

        @app.get("/auth/authorize")
        def authorize() -> Any:
            if not request.headers.get("Auth-Token"):
                return jsonify({"error": "no login token"}), 401
            service = request.args.get("service", "")
            return {"token": hub.keypair.token(hub.ownerid, service=service, permissions={})}

        @app.post("/rawstore/authorize")
        def rawstore_authorize() -> Any:
            body = request.get_json()
            owner = body["metadata"]["owner"]
            answers = {}
            for path, data in body["filedata"].items():
                # The client sends md5 in base64 and the presign URL unquoted: hex keys.
                key = f"{owner}/{base64.b64decode(data['md5']).hex()}/{path}"
                answers[path] = {
                    "upload_url": f"{hub.url}/rawstore/upload",
                    "upload_query": {
                        "key": key,
                        "acl": "public-read",
                        "Content-Type": "application/octet-stream",
                    },
                    "exists": key in hub.files,
                }
            return {"filedata": answers}

        @app.post("/rawstore/upload")
        def rawstore_upload() -> Any:
            # A file part with a file name arrives as a file; inline data (the data
            # package's descriptor) as a plain field.
            upload = request.files.get("file")
            content = upload.read() if upload else request.form["file"].encode()
            hub.files[request.form["key"]] = content
            return "", 204

        @app.get("/rawstore/presign")
        def presign() -> Any:
            key = request.args["url"].split("/rawstore/upload/", 1)[1]
            return {"url": f"{hub.url}/files/{key}?signature={hub._signature(key)}"}

        @app.get("/files/<path:key>")
        def file(key: str) -> Any:
            if key not in hub.files or request.args.get("signature") != hub._signature(key):
                return "not found", 404
            return Response(hub.files[key], mimetype="application/octet-stream")

        @app.route("/source/<path:rest>", methods=["GET", "POST"])
        def source(rest: str) -> Any:
            if request.method == "POST" and rest == "upload":
                hub.specs.append(request.get_json())
            answer = requests.request(
                request.method,
                f"{hub.specstore_url}/source/{rest}",
                params=request.args,
                data=request.get_data(),
                headers={
                    key: value
                    for key, value in request.headers.items()
                    if key in ("Auth-Token", "Content-Type")
                },
                timeout=60,
            )
            return Response(
                answer.content,
                status=answer.status_code,
                mimetype=answer.headers.get("Content-Type"),
            )

        return app
