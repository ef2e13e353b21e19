"""What a provider's run call can do: the largest launch per call and how many calls may run at once."""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import MAX_WORKERS, check_count
from ..container import split

#: Most run calls the managed layer ever makes at once, whatever a provider declares.
MAX_CONCURRENT_CALLS = 64


@dataclass(frozen=True)
class ProviderCapabilities:
    """The launch limits a provider declares; scale-ups are split to fit them.

    A large scale-up is split into run calls of at most
    ``max_workers_per_call`` workers, and up to ``max_concurrent_calls`` of
    them run at once (each in its own thread).

    Parameters
    ----------
    max_workers_per_call : int, optional
        Most workers one call of ``run_docker_worker_containers`` starts;
        ``None`` means no limit. Declare a multiple of the workers packed into
        one container, so that every call but the last fills its containers.
    max_concurrent_calls : int
        How many run calls may be in flight at once (1 to 64). Above 1,
        ``run_docker_worker_containers`` must be safe to call from several
        threads at once, and must not call back into the managed layer.

    Raises
    ------
    TypeError, ValueError
        When a limit is not a whole number in its range.
    """

    max_workers_per_call: int | None = None
    max_concurrent_calls: int = 1

    def __post_init__(self) -> None:
        if self.max_workers_per_call is not None:  # normalised: 8.0 becomes 8
            per_call = check_count(self.max_workers_per_call, "max_workers_per_call", minimum=1, maximum=MAX_WORKERS)
            object.__setattr__(self, "max_workers_per_call", per_call)
        concurrent = check_count(self.max_concurrent_calls, "max_concurrent_calls", minimum=1,
                                 maximum=MAX_CONCURRENT_CALLS)
        object.__setattr__(self, "max_concurrent_calls", concurrent)

    def batch_sizes(self, number: int) -> list[int]:
        """Split a launch of ``number`` workers into the sizes of its run calls, full calls first."""
        return split(number, self.max_workers_per_call or number)
