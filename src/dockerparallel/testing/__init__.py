"""Testing tools: an in-memory fake cloud and the provider conformance kit."""

from .conformance import ConformanceReport, StepOutcome, check_provider
from .fake import FakeCloud, FakeCloudError, FakeCloudProvider, FakeContainer

__all__ = [
    "ConformanceReport",
    "FakeCloud",
    "FakeCloudError",
    "FakeCloudProvider",
    "FakeContainer",
    "StepOutcome",
    "check_provider",
]
