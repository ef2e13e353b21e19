"""Which handles to kill on scale-down: an exact bounded subset-sum over handle counts.

Killing a handle kills every worker that shares it, so removing ``k`` workers
means choosing handles whose counts add up to ``k``. When no choice adds up
exactly, the best one below ``k`` is taken: the cluster never ends with fewer
workers than asked.

Handles are grouped by ``(count, state)``; the subset-sum runs over the
groups with binary splitting of each group's multiplicity, on Python integers
used as bit sets. Its cost is ``O(G · log n · k / 64)`` word operations for
``G`` groups, instead of an ``O(n · k)`` table over every handle.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from operator import attrgetter
from typing import Sequence

from .ledger import LedgerEntry


@dataclass(frozen=True)
class KillPlan:
    """The handles chosen to kill and how many workers they hold."""

    handles: list[str]
    workers: int
    requested: int

    @property
    def exact(self) -> bool:
        """Whether the chosen handles hold exactly the requested number of workers."""
        return self.workers == self.requested


def bounded_subset_sum(groups: Sequence[tuple[int, int]], target: int) -> list[int]:
    """Solve a bounded subset-sum.

    Parameters
    ----------
    groups : sequence of (weight, multiplicity)
        Item weights (positive) and how many items of each weight exist.
    target : int
        The upper bound of the sum.

    Returns
    -------
    list of int
        How many items to take from each group, so that the sum of
        ``weight * taken`` is the largest reachable value not above
        ``target``. Earlier groups are preferred among equal sums.
    """
    if target <= 0:
        return [0] * len(groups)
    mask = (1 << (target + 1)) - 1
    reach = 1
    chunks: list[tuple[int, int, int, int]] = []  # (group, copies, weight, reach before)
    for index, (weight, multiplicity) in enumerate(groups):
        size = 1
        while multiplicity > 0 and weight <= target:
            take = min(size, multiplicity)
            multiplicity -= take
            size *= 2
            chunks.append((index, take, weight * take, reach))
            reach = (reach | (reach << (weight * take))) & mask
    total = reach.bit_length() - 1
    taken = [0] * len(groups)
    for index, take, weight, before in reversed(chunks):
        if not (before >> total) & 1:
            taken[index] += take
            total -= weight
    return taken


def plan_kill(entries: Sequence[LedgerEntry], workers: int) -> KillPlan:
    """Choose handles holding at most ``workers`` workers, as close to it as possible.

    Among equal choices, initializing handles go before running ones and,
    within a group, newer handles before older ones.
    """
    available = sum(e.count for e in entries)
    if workers >= available:
        return KillPlan([e.handle for e in entries], available, workers)
    groups: dict[tuple[bool, int], list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.status != "initializing", entry.count)].append(entry)
    keys = sorted(groups)
    taken = bounded_subset_sum([(count, len(groups[(s, count)])) for s, count in keys], workers)
    chosen: list[str] = []
    total = 0
    for key, number in zip(keys, taken):
        if number:
            newest = sorted(groups[key], key=attrgetter("seq"), reverse=True)[:number]
            chosen.extend([e.handle for e in newest])
            total += key[1] * number
    return KillPlan(chosen, total, workers)
