"""Archives as the tests make them."""

from __future__ import annotations

import io
import zipfile


def with_junk(archive: bytes) -> bytes:
    """Four bytes before a zip: zipfile and openpyxl open it all the same."""
    return b"JUNK" + archive


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
