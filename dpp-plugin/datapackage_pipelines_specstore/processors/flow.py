"""DPP processor ``specstore.flow``: a whole plan in one processor (see
``datapackage_pipelines_specstore.generator``)."""

from datapackage_pipelines_specstore.processors import run_plan

if __name__ == "__main__":
    run_plan()
