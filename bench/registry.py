"""The registry the benchmark reads: datasets of many owners, each as the DataHub client
uploads it, loaded straight into the database."""

from __future__ import annotations

import datetime as dt
import json
import time

from sqlalchemy import create_engine, insert, inspect

from specstore.store.models import Dataset, Revision

OWNERS = 100
README = "# GDP\n\nGross domestic product by country and year, in current US dollars.\n" * 12
TABLE_SCHEMA = {
    "fields": [
        {"name": "country", "type": "string"},
        {"name": "year", "type": "integer"},
        {"name": "gdp", "type": "number"},
    ]
}


# The shape the DataHub client sends: its data package inline, README and schemas with it.
CLIENT_SPEC = {
    "meta": {
        "version": 1,
        "ownerid": "%OWNER%",
        "owner": "Bench",
        "dataset": "%NAME%",
        "findability": "published",
    },
    "inputs": [
        {
            "kind": "datapackage",
            "url": "http://rawstore.bench/owner/gdp/datapackage.json",
            "parameters": {
                "resource-mapping": {
                    "data/gdp.csv": "http://rawstore.bench/9f86d081884c7d65?Signature=bench"
                },
                "descriptor": {
                    "name": "gdp",
                    "title": "GDP",
                    "readme": README,
                    "resources": [
                        {
                            "name": "gdp",
                            "path": "data/gdp.csv",
                            "format": "csv",
                            "mediatype": "text/csv",
                            "encoding": "utf-8",
                            "schema": TABLE_SCHEMA,
                        }
                    ],
                },
            },
        }
    ],
    "processing": [
        {"input": "gdp", "output": "gdp", "tabulator": {"delimiter": ","}, "schema": TABLE_SCHEMA}
    ],
    "outputs": [{"kind": "zip", "parameters": {"out-file": "dataset.zip"}}, {"kind": "sqlite"}],
}


def spec_for(owner: str, name: str, template: dict = CLIENT_SPEC) -> dict:
    text = json.dumps(template).replace("%OWNER%", owner).replace("%NAME%", name)
    return json.loads(text)


def load_registry(url: str, start: int, stop: int) -> None:
    """Datasets start..stop-1 (owner-<i % OWNERS>/ds-<i>), 3 revisions each, the newest RUNNING;
    then VACUUM ANALYZE, again until every page is marked as seen by all."""
    engine = create_engine(url)
    now = dt.datetime.now(dt.UTC)
    batch = 2000
    # Ended revisions announced already, as migration 0009 leaves those of a registry that
    # ended before it (a database of an older release has no such column).
    announced = "announced" in {
        column["name"] for column in inspect(engine).get_columns("revisions")
    }
    with engine.begin() as connection:
        for first in range(start, stop, batch):
            numbers = range(first, min(first + batch, stop))
            ids = connection.execute(
                insert(Dataset).returning(Dataset.id, sort_by_parameter_order=True),
                [
                    {
                        "owner_id": f"owner-{i % OWNERS}",
                        "name": f"ds-{i}",
                        "last_revision": 3,
                        "findability": "published",
                        "created": now,
                        "modified": now - dt.timedelta(seconds=i),
                    }
                    for i in numbers
                ],
            ).scalars()
            rows = []
            for i, dataset_id in zip(numbers, ids, strict=True):
                spec = spec_for(f"owner-{i % OWNERS}", f"ds-{i}")
                for revision in (1, 2, 3):
                    rows.append(
                        {
                            "dataset_id": dataset_id,
                            "revision": revision,
                            "findability": "published",
                            "trigger": "dirty-task",
                            "spec": spec,
                            "state": "RUNNING" if revision == 3 else "SUCCEEDED",
                            "success": None if revision == 3 else True,
                            "logs": ["load: 3 rows"],
                            "errors": [],
                            "stats": {"count_of_rows": 3},
                            **({"announced": now if revision < 3 else None} if announced else {}),
                            "pipelines": None,
                            "created": now,
                            "modified": now,
                        }
                    )
            connection.execute(insert(Revision), rows)
    # Measure the steady state: statistics up to date, no autovacuum starting mid-run,
    # and every page marked as seen by all (which lets the listing read its index alone).
    # VACUUM may not mark a page at once after the load: it runs again until it has.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
        for _ in range(50):
            unmarked = connection.exec_driver_sql(
                "SELECT sum(relpages - relallvisible) FROM pg_class "
                "WHERE relname IN ('datasets', 'revisions')"
            ).scalar()
            if not unmarked:
                break
            time.sleep(0.2)
            connection.exec_driver_sql("VACUUM datasets, revisions")
        else:
            print(f"{unmarked} pages of the registry are still not marked as seen by all")
    engine.dispose()
