"""Worker management on three provider primitives (run, status, kill)."""

from .capabilities import ProviderCapabilities
from .ledger import LedgerEntry, WorkerLedger
from .provider import ManagedCloudProvider
from .workers import ScaleReport, WorkerManager
from .selection import KillPlan, bounded_subset_sum, plan_kill

__all__ = [
    "KillPlan",
    "LedgerEntry",
    "ManagedCloudProvider",
    "ProviderCapabilities",
    "ScaleReport",
    "WorkerLedger",
    "WorkerManager",
    "bounded_subset_sum",
    "plan_kill",
]
