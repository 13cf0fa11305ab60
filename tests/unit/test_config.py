"""Settings read from the environment: what is refused at start, and why."""

from __future__ import annotations

import pytest

from specstore.config import ConfigError, configure


def test_no_connection_may_be_specstores_own_database(tmp_path):
    own = f"sqlite:///{tmp_path}/specstore.db"
    with pytest.raises(ConfigError, match="ENGINE_MINE: it is specstore's own database"):
        configure(
            {
                "DATABASE_URL": own,
                "ENGINE_MINE": f"sqlite:///{tmp_path}/../{tmp_path.name}/specstore.db",
            }
        )
    with pytest.raises(ConfigError, match="ENGINE_MINE: it is specstore's own database"):
        configure(
            {
                "DATABASE_URL": "postgresql://u:p@db:5432/specstore",
                "ENGINE_MINE": "postgres://other:secret@db:5432/specstore",
            }
        )
    with pytest.raises(ConfigError, match="ENGINE_NONE_OWNERS: there is no ENGINE_NONE"):
        configure({"ENGINE_NONE_OWNERS": "alice"})
    configure({"DATABASE_URL": own, "ENGINE_OTHER": f"sqlite:///{tmp_path}/warehouse.db"})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"ANNOUNCE_URLS": "http://hub.example/announcements"},
            "ANNOUNCE_URLS needs ANNOUNCE_SECRET: the secret announcements are signed with",
        ),
        (
            {"ANNOUNCE_URLS": "ftp://hub.example/x", "ANNOUNCE_SECRET": "s"},
            "ANNOUNCE_URLS='ftp://hub.example/x': "
            "'ftp://hub.example/x' is not an http or https URL",
        ),
    ],
)
def test_announcement_settings_are_checked(environ, message):
    with pytest.raises(ConfigError) as refused:
        configure(environ)
    assert str(refused.value) == message
