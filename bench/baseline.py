"""The benchmark's yardsticks, served by gunicorn with the same settings as specstore.

* ``/ping``: the smallest Flask app answering a small JSON object (the baseline
  every ratio is taken to).
* ``/floor/<owner>/<dataset>``: the same, plus the one SELECT that ``status``
  needs, sent by psycopg2 on a connection kept open: what a route that reads
  PostgreSQL once costs on this machine, with nothing else around it.
"""

import os

import psycopg2
from flask import Flask
from sqlalchemy.engine import make_url

app = Flask(__name__)
_connection = None

STATUS_QUERY = """
SELECT r.state, r.logs, r.modified, r.stats
FROM datasets d JOIN revisions r ON r.dataset_id = d.id AND r.revision = d.last_revision
WHERE d.owner_id = %s AND d.name = %s
"""


@app.get("/ping")
def ping() -> dict[str, object]:
    return {"ok": True, "service": "baseline", "version": 1}


@app.get("/floor/<owner>/<dataset>")
def floor(owner: str, dataset: str) -> dict[str, object]:
    global _connection
    if _connection is None:
        url = make_url(os.environ["BASELINE_DATABASE_URL"])
        _connection = psycopg2.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database
        )
        _connection.autocommit = True
    with _connection.cursor() as cursor:
        cursor.execute(STATUS_QUERY, (owner, dataset))
        state, logs, modified, stats = cursor.fetchone()
    return {"state": state, "logs": logs[-50:], "modified": modified.isoformat(), "stats": stats}
