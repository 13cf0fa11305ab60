"""The benchmark's yardstick: the smallest Flask app answering a small JSON object,
served by gunicorn with the same settings as specstore."""

from flask import Flask

app = Flask(__name__)


@app.get("/ping")
def ping() -> dict[str, object]:
    return {"ok": True, "service": "baseline", "version": 1}
