"""DPP processor ``specstore.npm_publish``: the npm output (see ``..npm``)."""

from dataflows import Flow
from datapackage_pipelines.utilities.flow_utils import spew_flow
from datapackage_pipelines.wrapper import ingest

from datapackage_pipelines_specstore.npm import steps


def flow(parameters: dict) -> Flow:
    return Flow(*steps(parameters))


if __name__ == "__main__":
    with ingest() as ctx:
        spew_flow(flow(ctx.parameters), ctx)
