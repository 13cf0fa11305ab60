"""DPP processor ``specstore.derive`` (see ``datapackage_pipelines_specstore.publication``)."""

from datapackage_pipelines_specstore.processors import run

if __name__ == "__main__":
    run("derive")
