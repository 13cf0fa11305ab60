"""specstore's plugin for datapackage-pipelines (DPP).

DPP resolves a step ``run: specstore.<name>`` to
``datapackage_pipelines_specstore/processors/<name>.py``. The code the
processors run lives in this package's other modules, which specstore's
embedded runner imports too, so both engines build the same outputs. DPP finds
the pipelines specstore writes through :class:`Generator` (``generator.py``).
"""

from .generator import Generator

__all__ = ["Generator"]
