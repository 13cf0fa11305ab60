"""DPP processor ``specstore.publication`` (see ``datapackage_pipelines_specstore.publication``)."""

from datapackage_pipelines_specstore.processors import run

if __name__ == "__main__":
    run("publication")
