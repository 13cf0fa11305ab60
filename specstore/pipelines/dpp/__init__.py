"""datapackage-pipelines (DPP) as specstore's engine: the pipelines folder and its files
(:mod:`.files`, :mod:`.writer`), DPP's dashboard (:mod:`.dashboard`), the dispatcher that
hands revisions over (:mod:`.dispatcher`), and DPP's server mode on one machine
(:mod:`.stack`)."""

from .dashboard import DppDashboard
from .dispatcher import DppDispatcher
from .files import DATASET_FILE, LOCK_FILE, DppPipelines

__all__ = ["DATASET_FILE", "LOCK_FILE", "DppDashboard", "DppDispatcher", "DppPipelines"]
