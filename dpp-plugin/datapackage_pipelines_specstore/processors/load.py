"""DPP processor ``specstore.load`` (see ``datapackage_pipelines_specstore.steps``)."""

from datapackage_pipelines_specstore.processors import run

if __name__ == "__main__":
    run("load")
