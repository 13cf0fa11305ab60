"""DPP's dashboard as specstore runs it: DPP's own app, with the values of secret query
parameters (the hook credentials in each pipeline's hook URLs, and in the pipeline
file DPP shows as its ``source``) replaced by ``***`` in every answer, JSON or HTML.

Run it the way DPP's own dashboard is run, in the pipelines folder::

    FLASK_APP=datapackage_pipelines_specstore.dashboard:app flask run --host ... --port ...
"""

from __future__ import annotations

import re
from typing import Any

from datapackage_pipelines.web.server import app

# ``token=<value>`` however the page writes what comes before it (``&``, ``&amp;``,
# ``\u0026``): a dashboard's pages have nothing else so named.
_SECRET = re.compile(r"((?:token|jwt)=)[^&\s#\"'<>\\]*")


@app.after_request
def _without_secrets(response: Any) -> Any:
    if response.direct_passthrough or response.mimetype.startswith("image/"):
        return response
    text = response.get_data(as_text=True)
    if "token=" in text or "jwt=" in text:
        response.set_data(_SECRET.sub(r"\1***", text))
    return response
