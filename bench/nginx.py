"""nginx in front of a server, as docs/how-to/production.md sets it up: it reads
each request whole before it hands it to a gunicorn sync worker, and each answer whole
before it sends it on, so a slow or idle client never holds a worker."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.net import free_port, wait_for_http

CONFIG = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 100000;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


class Nginx:
    """nginx on a free loopback port, passing every request to ``upstream`` (a port)."""

    def __init__(self, upstream: int) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.root = Path(tempfile.mkdtemp(prefix="specstore-nginx-"))
        self.root.chmod(0o777)  # its workers may run as nobody
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = self.root / "nginx.conf"
        config.write_text(CONFIG.format(root=self.root, port=self.port, upstream=upstream))
        self.process = subprocess.Popen(
            [binary, "-c", str(config), "-p", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr.log").open("wb"),
        )
        wait_for_http(self.url + "/source/schema", alive=lambda: self.process.poll() is None)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
