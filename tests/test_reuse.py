"""The reuse-distance model on hand-made traces, against a brute-force LRU written out in the test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerprof.roofline.reuse import DRAM, charged_levels, level_of, reaches, split_by_level

R, W = False, True
ONE = [("L", 100)]  # one cache level of 100 bytes
TWO = [("L1", 100), ("L2", 1000)]


def test_a_tensor_reused_after_less_and_after_more_than_the_capacity() -> None:
    trace = [
        ("A", 40, W),  # next touched right away: stays cached -> L
        ("A", 40, R),  # nothing in between: reach 0 + 40 -> L
        ("B", 50, W),
        ("B", 50, R),
        ("A", 40, R),  # B (50 B) in between: reach 50 + 40 = 90 <= 100 -> L
        ("C", 80, W),
        ("C", 80, R),
        ("A", 40, R),  # C (80 B) in between: reach 80 + 40 = 120 > 100 -> DRAM
    ]
    assert charged_levels(_ids(trace), ONE) == ["L", "L", "L", "L", "L", "L", "L", DRAM]


def test_weights_stay_cached_across_forwards_when_they_fit() -> None:
    # One forward: read W1 (30 B), read the input X (10), write A (50), read A, read W2 (30), write B.
    forward = [("W1", 30, R), ("X", 10, R), ("A", 50, W), ("A", 50, R), ("W2", 30, R), ("B", 10, W)]
    # W1's previous read is the last forward's: X, A, W2 and B came in between = 10 + 50 + 30 + 10 =
    # 100 B, so its reach is 130 B: evicted from 100 B, kept in 1000 B.
    assert charged_levels(_ids(forward), ONE)[0] == DRAM
    assert charged_levels(_ids(forward), [("L", 130)])[0] == "L"
    assert charged_levels(_ids(forward), [("L", 129)])[0] == DRAM
    # W2: B, W1, X, A in between = 10 + 30 + 10 + 50 = 100 B -> reach 130 as well.
    assert reaches(*_columns(_ids(forward)))[4] == 130


def test_an_in_place_op_reads_and_writes_the_same_storage() -> None:
    # conv writes X; relu_ reads X and writes X; the next conv reads X.
    trace = [("X", 40, W), ("X", 40, R), ("X", 40, W), ("X", 40, R), ("Y", 90, W)]
    # The reads follow the write with nothing in between: reach 40. The in-place write is read back
    # right after: reach 40. Y: its next touch is the next pass's Y write, X (40 B) in between: 130.
    assert reaches(*_columns(_ids(trace))) == [40, 40, 40, 40, 130]
    assert charged_levels(_ids(trace), ONE) == ["L", "L", "L", "L", DRAM]


def test_a_tensor_larger_than_a_level_never_lives_in_it() -> None:
    trace = [("BIG", 150, W), ("BIG", 150, R)]
    assert charged_levels(_ids(trace), ONE) == [DRAM, DRAM]
    assert charged_levels(_ids(trace), TWO) == ["L2", "L2"]


def test_multi_level_hits_go_to_the_innermost_level_that_holds_them() -> None:
    trace = [
        ("A", 10, W),
        ("A", 10, R),  # reach 10 -> L1
        ("B", 400, W),  # next touched in the next pass, past A and C (4010 B): DRAM
        ("A", 10, R),  # B in between: reach 410 -> L2
        ("C", 4000, W),  # larger than every level: DRAM
        ("A", 10, R),  # C in between: reach 4010 -> DRAM
    ]
    assert charged_levels(_ids(trace), TWO) == ["L1", "L1", DRAM, "L2", DRAM, DRAM]


def test_written_data_evicted_before_its_next_use_is_charged_to_dram() -> None:
    # A is written and never read in the pass: it is charged where it still is when next touched
    # (the next pass's write), B (10 B) having come in between: reach 20.
    trace = [("A", 10, W), ("B", 10, R)]
    assert charged_levels(_ids(trace), [("L", 20)]) == ["L", "L"]
    assert charged_levels(_ids(trace), [("L", 19)]) == [DRAM, DRAM]


def test_accesses_of_no_bytes_are_charged_nowhere() -> None:
    assert charged_levels(_ids([("A", 0, W), ("A", 8, R)]), ONE) == [None, "L"]


def test_split_by_level_lists_every_level_and_sums_the_bytes() -> None:
    assert split_by_level([(10, 10), (410, 400), (5000, 7)], TWO) == {"L1": 10, "L2": 400, DRAM: 7}
    assert split_by_level([], TWO) == {"L1": 0, "L2": 0, DRAM: 0}
    assert level_of(100, TWO) == "L1" and level_of(101, TWO) == "L2" and level_of(1001, TWO) == DRAM


def test_reaches_refuses_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        reaches([1, 2], [8], [False, True])


# --- against a brute-force LRU ------------------------------------------------------------------


def _brute_reaches(trace: list[tuple[int, int, bool]]) -> list[int]:
    """Run the pass three times; for each access of the middle pass, scan for the distinct other
    storages since its previous access (a read) or until its next access (a write), in bytes."""
    n = len(trace)
    tripled = trace * 3
    result = []
    for k in range(n, 2 * n):
        storage, nbytes, write = tripled[k]
        if write:
            after = next(j for j in range(k + 1, 3 * n) if tripled[j][0] == storage)
            window = tripled[k + 1 : after]
        else:
            before = next(j for j in range(k - 1, -1, -1) if tripled[j][0] == storage)
            window = tripled[before + 1 : k]
        latest: dict[int, int] = {}
        for other, size, _ in window:  # a storage holds the bytes of its latest access
            if other != storage:
                latest[other] = size
        result.append(sum(latest.values()) + nbytes)
    return result


traces = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 300), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(traces)
def test_reaches_match_a_brute_force_lru(trace: list[tuple[int, int, bool]]) -> None:
    assert reaches(*_columns(trace)) == _brute_reaches(trace)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    traces,
    st.lists(st.integers(1, 2000), min_size=0, max_size=3, unique=True).map(sorted),
)
def test_level_bytes_sum_to_the_bytes_of_every_op(
    trace: list[tuple[int, int, bool]], capacities: list[int]
) -> None:
    levels = [(f"L{i}", c) for i, c in enumerate(capacities)]
    # Cut the trace into ops of up to three accesses: each op's levels sum to its bytes.
    reach = reaches(*_columns(trace))
    for start in range(0, len(trace), 3):
        op = list(zip(reach[start : start + 3], [a[1] for a in trace[start : start + 3]], strict=True))
        by_level = split_by_level(op, levels)
        assert sum(by_level.values()) == sum(nbytes for _, nbytes in op)
        assert list(by_level) == [*(name for name, _ in levels), DRAM]
    assert all(r >= a[1] for r, a in zip(reach, trace, strict=True)), "a reach holds the access itself"


def _ids(trace: list[tuple[str, int, bool]]) -> list[tuple[int, int, bool]]:
    names: dict[str, int] = {}
    return [(names.setdefault(name, len(names)), nbytes, write) for name, nbytes, write in trace]


def _columns(trace: list[tuple[int, int, bool]]) -> tuple[list[int], list[int], list[bool]]:
    return [a[0] for a in trace], [a[1] for a in trace], [a[2] for a in trace]
