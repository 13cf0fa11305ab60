"""specstore: a registry of source specs for a data hub, and the pipelines they become."""

from .app import create_app

__all__ = ["create_app"]
