"""Testing tools: an in-memory fake cloud, the provider conformance kit and the contract tests.

:class:`ProviderContract` (the contract as pytest tests) is imported on first
use, so that importing this package does not import pytest.
"""

from __future__ import annotations

from typing import Any

from .conformance import ConformanceReport, StepOutcome, check_provider
from .fake import FakeCloud, FakeCloudError, FakeCloudProvider, FakeContainer

__all__ = [
    "ConformanceReport",
    "FakeCloud",
    "FakeCloudError",
    "FakeCloudProvider",
    "FakeContainer",
    "ProviderContract",
    "StepOutcome",
    "check_provider",
]


def __getattr__(name: str) -> Any:
    """Import :class:`ProviderContract` (and pytest with it) only when it is asked for."""
    if name == "ProviderContract":
        from .contract import ProviderContract

        return ProviderContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
