"""Kill selection: exact bounded subset-sum over handle counts, with its preferences."""

from __future__ import annotations

import itertools
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from dockerparallel.managed import KillPlan, LedgerEntry, bounded_subset_sum, plan_kill

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
STATUSES = ("initializing", "running")


def entries_of(specs: list[tuple[int, str]], seqs: list[int] | None = None) -> list[LedgerEntry]:
    """Ledger entries h0, h1, ... with the given (count, status) and ages (default: list order)."""
    seqs = seqs or list(range(1, len(specs) + 1))
    return [LedgerEntry(f"h{i}", count, status, seq) for i, ((count, status), seq) in enumerate(zip(specs, seqs))]


def brute_force_best(counts: list[int], target: int) -> int:
    """The largest sum of a subset of ``counts`` not above ``target``, by enumeration."""
    sums = {sum(c) for r in range(len(counts) + 1) for c in itertools.combinations(counts, r)}
    return max(s for s in sums if s <= target) if target >= 0 else 0


def dp_best(groups: list[tuple[int, int]], target: int) -> int:
    """The same for a bounded subset-sum, by a plain set-of-sums DP."""
    reachable = {0}
    for weight, multiplicity in groups:
        for _ in range(multiplicity):
            reachable |= {s + weight for s in reachable if s + weight <= target}
    return max(reachable)


def chosen(plan: KillPlan, entries: list[LedgerEntry]) -> list[LedgerEntry]:
    by_handle = {e.handle: e for e in entries}
    return [by_handle[h] for h in plan.handles]


entry_specs = st.lists(st.tuples(st.integers(1, 8), st.sampled_from(STATUSES)), max_size=12)


@st.composite
def entries_and_target(draw: st.DrawFn) -> tuple[list[LedgerEntry], int]:
    specs = draw(entry_specs)
    seqs = draw(st.permutations(range(1, len(specs) + 1)))
    target = draw(st.integers(0, sum(c for c, _ in specs) + 3))
    return entries_of(specs, list(seqs)), target


# -- unit ------------------------------------------------------------------------


def test_four_four_two_minus_five_kills_four() -> None:
    entries = entries_of([(4, "running"), (4, "running"), (2, "running")])
    plan = plan_kill(entries, 5)
    assert (plan.workers, plan.requested, plan.exact) == (4, 5, False)
    assert plan.handles == ["h1"]  # the newer of the two 4s


def test_exact_choice_over_shared_handles() -> None:
    entries = entries_of([(4, "running"), (3, "running"), (2, "running")])
    plan = plan_kill(entries, 5)
    assert plan.exact and sorted(plan.handles) == ["h1", "h2"]


def test_nothing_to_kill() -> None:
    assert plan_kill([], 3) == KillPlan([], 0, 3)
    assert plan_kill(entries_of([(2, "running")]), 0) == KillPlan([], 0, 0)
    assert plan_kill(entries_of([(4, "running")]), 3) == KillPlan([], 0, 3)


def test_asking_for_everything_kills_everything() -> None:
    entries = entries_of([(4, "running"), (1, "initializing")])
    plan = plan_kill(entries, 10)
    assert sorted(plan.handles) == ["h0", "h1"] and plan.workers == 5 and not plan.exact


def test_initializing_before_running_at_equal_count() -> None:
    entries = entries_of([(2, "initializing"), (2, "running"), (2, "running")])
    assert plan_kill(entries, 2).handles == ["h0"]


def test_initializing_before_running_across_counts() -> None:
    entries = entries_of([(2, "initializing"), (1, "running"), (1, "running")])
    assert plan_kill(entries, 2).handles == ["h0"]


def test_newer_before_older_within_a_group() -> None:
    entries = entries_of([(1, "running")] * 5, seqs=[3, 5, 1, 4, 2])
    assert sorted(plan_kill(entries, 2).handles) == ["h1", "h3"]  # seqs 5 and 4


def test_bounded_subset_sum_units() -> None:
    assert bounded_subset_sum([(3, 2), (5, 1)], 0) == [0, 0]
    assert bounded_subset_sum([], 7) == []
    assert bounded_subset_sum([(9, 4)], 8) == [0]
    assert bounded_subset_sum([(3, 2), (5, 1)], 11) == [2, 1]
    assert bounded_subset_sum([(1, 100_000)], 77_777) == [77_777]


def test_bounded_subset_sum_prefers_earlier_groups() -> None:
    assert bounded_subset_sum([(2, 1), (1, 2)], 2) == [1, 0]
    assert bounded_subset_sum([(1, 2), (2, 1)], 2) == [2, 0]


# -- properties ----------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(entries_and_target())
def test_plan_is_the_best_sum_not_above_the_target(case: tuple[list[LedgerEntry], int]) -> None:
    entries, target = case
    plan = plan_kill(entries, target)
    picked = chosen(plan, entries)
    assert len(set(plan.handles)) == len(plan.handles)
    assert plan.workers == sum(e.count for e in picked) <= target
    assert plan.workers == brute_force_best([e.count for e in entries], target)
    assert plan.exact == (plan.workers == target) and plan.requested == target


@PROPERTY_SETTINGS
@given(entries_and_target())
def test_plan_prefers_initializing_then_newer(case: tuple[list[LedgerEntry], int]) -> None:
    entries, target = case
    picked = {e.handle for e in chosen(plan_kill(entries, target), entries)}
    groups: dict[tuple[str, int], list[LedgerEntry]] = defaultdict(list)
    for entry in entries:
        groups[(entry.status, entry.count)].append(entry)
    for (status, count), group in groups.items():
        taken = [e.seq for e in group if e.handle in picked]
        left = [e.seq for e in group if e.handle not in picked]
        assert not taken or not left or min(taken) > max(left), f"older {status} handle taken first"
        if status == "running" and taken:
            spare = [e for e in groups.get(("initializing", count), []) if e.handle not in picked]
            assert not spare, f"running count-{count} handle killed while an initializing one is spared"


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(0, 6)), max_size=6), st.integers(0, 80))
def test_bounded_subset_sum_matches_a_dp(groups: list[tuple[int, int]], target: int) -> None:
    taken = bounded_subset_sum(groups, target)
    assert all(0 <= t <= m for t, (_, m) in zip(taken, groups)) and len(taken) == len(groups)
    total = sum(t * w for t, (w, _) in zip(taken, groups))
    assert total == dp_best(groups, target) <= target
