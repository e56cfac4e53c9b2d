"""layerprof.analysis.budgets: limits checked on hand-built reports (closed-form values) and a real one."""

from __future__ import annotations

import math
from dataclasses import replace
from types import MappingProxyType

import pytest
from torch import nn

import layerprof
from layerprof.analysis.budgets import (
    BUDGET_NAMES,
    BudgetResult,
    Budgets,
    assert_within,
    check,
    failures,
    memory_bound_share,
)
from layerprof.core.records import LayerRow, Verdict
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device
from layerprof.report.facade import Report

T4 = get_device("t4")
ORIN = get_device("jetson-orin-nano-8gb")


def verdict(target: str, bound: str, ms: float, efficiency: float | None = None) -> Verdict:
    return Verdict(target, bound, "matrix", 10.0, ms, None, efficiency)  # type: ignore[arg-type]


def verdicts(*items: Verdict) -> MappingProxyType[str, Verdict]:
    return MappingProxyType({v.target: v for v in items})


def make_report(*, timed: bool = False) -> Report:
    """Two rows: conv (2e9 FLOPs, 1000 params; memory-bound 3 ms on t4, compute-bound 4 ms on orin)
    and relu (0.5e9 FLOPs; memory-bound 1 ms on t4 and 2 ms on orin)."""
    conv = LayerRow(
        "conv", "Conv2d", params=1000, flops=2_000_000_000, matrix_flops=2_000_000_000,
        time_ms=8.0 if timed else None,
        roofline=verdicts(verdict("t4", "memory", 3.0), verdict(ORIN.name, "compute", 4.0)),
    )  # fmt: skip
    relu = LayerRow(
        "relu", "ReLU", flops=500_000_000, time_ms=2.0 if timed else None,
        roofline=verdicts(verdict("t4", "memory", 1.0), verdict(ORIN.name, "memory", 2.0)),
    )  # fmt: skip
    # totals: 2.5e9 FLOPs, 1000 params; predicted 3 + 1 = 4 ms on t4, 4 + 2 = 6 ms on orin;
    # measured 10 ms: efficiency 4 / 10 = 0.4 on t4, 6 / 10 = 0.6 on orin
    total = LayerRow(
        "total", "Net", params=1000, flops=2_500_000_000, matrix_flops=2_000_000_000,
        time_ms=10.0 if timed else None,
        roofline=MappingProxyType({
            "t4": verdict("t4", "memory", 4.0, 0.4 if timed else None),
            "jetson-orin-nano-8gb": verdict(ORIN.name, "compute", 6.0, 0.6 if timed else None),
        }),
    )  # fmt: skip
    return Report(layers=(conv, relu), total=total, targets=(T4, ORIN), model_name="Net")


def by_key(results: tuple[BudgetResult, ...]) -> dict[tuple[str, str | None], BudgetResult]:
    return {(r.budget, r.target): r for r in results}


def test_counted_budgets() -> None:
    results = by_key(check(make_report(), max_gflops=2.0, max_params=2000))
    gflops = results[("max_gflops", None)]
    assert gflops.value == 2.5  # 2.5e9 / 1e9
    assert not gflops.passed
    assert gflops.excess == pytest.approx(0.25)  # (2.5 - 2) / 2
    assert gflops.describe() == "FAIL max_gflops: 2.5 GFLOPs > limit 2 GFLOPs, over by 25.0% (counted)"
    params = results[("max_params", None)]
    assert (params.value, params.passed, params.basis) == (1000, True, "counted")
    assert params.describe() == "ok   max_params: 1K params <= limit 2K params (counted)"


def test_predicted_latency_per_target() -> None:
    results = by_key(check(make_report(), max_latency_ms=5.0))
    assert set(results) == {("max_latency_ms", "t4"), ("max_latency_ms", "jetson-orin-nano-8gb")}
    assert results[("max_latency_ms", "t4")].passed  # 4 ms <= 5 ms
    orin = results[("max_latency_ms", "jetson-orin-nano-8gb")]
    assert (orin.value, orin.passed, orin.basis) == (6.0, False, "predicted")
    assert orin.excess == pytest.approx(0.2)  # (6 - 5) / 5
    assert "over by 20.0%" in orin.describe()


def test_one_target_only() -> None:
    results = check(make_report(), max_latency_ms=5.0, target="t4")
    assert [(r.target, r.passed) for r in results] == [("t4", True)]
    with pytest.raises(InvalidArgumentError, match="a100 not in the report; it was judged on t4, jetson"):
        check(make_report(), max_latency_ms=5.0, target="a100")


def test_memory_bound_share() -> None:
    report = make_report()
    # t4: both rows memory-bound: (3 + 1) / 4 = 1.0; orin: only relu: 2 / (4 + 2) = 1/3
    assert memory_bound_share(report, "t4") == 1.0
    assert memory_bound_share(report, ORIN.name) == pytest.approx(1 / 3)
    results = by_key(check(report, max_memory_bound_share=0.5))
    assert not results[("max_memory_bound_share", "t4")].passed
    assert results[("max_memory_bound_share", "t4")].excess == pytest.approx(1.0)  # (1 - 0.5) / 0.5
    assert results[("max_memory_bound_share", ORIN.name)].passed


def test_measured_latency_and_efficiency() -> None:
    report = make_report(timed=True)
    results = by_key(check(report, max_latency_ms=9.0, min_roofline_efficiency=0.5))
    latency = results[("max_latency_ms", None)]
    assert (latency.value, latency.basis, latency.passed) == (10.0, "measured", False)
    assert latency.excess == pytest.approx(1 / 9)  # (10 - 9) / 9
    t4 = results[("min_roofline_efficiency", "t4")]
    assert (t4.value, t4.passed) == (0.4, False)
    assert t4.excess == pytest.approx(0.2)  # (0.5 - 0.4) / 0.5
    assert (
        t4.describe() == "FAIL min_roofline_efficiency @ t4: 40.0% < limit 50.0%, under by 20.0% (measured)"
    )
    assert results[("min_roofline_efficiency", ORIN.name)].passed  # 0.6 >= 0.5


def test_efficiency_only_on_the_targets_the_time_was_taken_on() -> None:
    # A time measured on this machine has no efficiency on a T4: such a target is skipped when all
    # targets are checked, and refused when it is asked for by name.
    report = make_report(timed=True)
    t4_only_timed = replace(
        report,
        total=replace(
            report.total,
            roofline=verdicts(verdict("t4", "memory", 4.0, 0.4), verdict(ORIN.name, "compute", 6.0, None)),
        ),
    )
    (result,) = check(t4_only_timed, min_roofline_efficiency=0.3)
    assert (result.target, result.value, result.passed) == ("t4", 0.4, True)
    with pytest.raises(InvalidArgumentError, match="jetson-orin-nano-8gb are not"):
        check(t4_only_timed, min_roofline_efficiency=0.3, target=ORIN.name)
    untimed_here = replace(
        t4_only_timed,
        total=replace(t4_only_timed.total, roofline=verdicts(verdict("t4", "memory", 4.0, None))),
        targets=(T4,),
    )
    with pytest.raises(InvalidArgumentError, match="add target 'auto'"):
        check(untimed_here, min_roofline_efficiency=0.3)


def test_efficiency_needs_a_timed_report_and_targets_need_targets() -> None:
    with pytest.raises(InvalidArgumentError, match="needs a timed report"):
        check(make_report(), min_roofline_efficiency=0.5)
    untargeted = Report(layers=(), total=LayerRow("total", "Net", flops=10), model_name="Net")
    assert check(untargeted, max_gflops=1.0)[0].passed
    with pytest.raises(InvalidArgumentError, match="judged per target"):
        check(untargeted, max_latency_ms=1.0)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("max_gflops", -1.0, "must be above 0"),
        ("max_gflops", 0.0, "must be above 0"),
        ("max_latency_ms", math.inf, "must be a number"),
        ("max_params", True, "must be a number"),
        ("max_memory_bound_share", 1.5, "share between 0 and 1"),
        ("min_roofline_efficiency", 2.0, "share between 0 and 1"),
    ],
)
def test_budgets_validate(field: str, value: object, needle: str) -> None:
    with pytest.raises(InvalidArgumentError, match=needle):
        Budgets(**{field: value})  # type: ignore[arg-type]


def test_budgets_merge_and_mapping() -> None:
    from_file = Budgets(max_gflops=5.0, max_params=1e6)
    merged = from_file.overridden_by(Budgets(max_gflops=3.0, max_latency_ms=2.0))
    assert merged == Budgets(max_gflops=3.0, max_params=1e6, max_latency_ms=2.0)
    assert [name for name, _ in merged.limits()] == ["max_gflops", "max_params", "max_latency_ms"]
    assert Budgets().empty and not merged.empty
    assert Budgets.from_mapping({"max_gflops": 1}) == Budgets(max_gflops=1.0)
    with pytest.raises(InvalidArgumentError, match="unknown budget"):
        Budgets.from_mapping({"max_glops": 1})
    assert set(BUDGET_NAMES) == {f for f in Budgets.__dataclass_fields__}


def test_check_keywords_override_budgets() -> None:
    results = check(make_report(), Budgets(max_gflops=1.0), max_gflops=3.0)
    assert [(r.budget, r.limit, r.passed) for r in results] == [("max_gflops", 3.0, True)]
    assert failures(results) == ()


def test_assert_within_passes_and_returns_results() -> None:
    results = assert_within(make_report(), max_gflops=3.0, max_latency_ms=7.0)
    assert len(results) == 3 and all(r.passed for r in results)
    with pytest.raises(InvalidArgumentError, match="at least one budget"):
        assert_within(make_report())


def test_assert_within_raises_with_the_offending_rows() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_within(make_report(), max_gflops=2.0, max_latency_ms=5.0, target=ORIN.name)
    message = str(caught.value)
    lines = message.splitlines()
    assert lines[0] == "Net: 2 budget(s) exceeded"
    assert lines[1].strip().startswith("FAIL max_gflops: 2.5 GFLOPs")
    assert (
        lines[2]
        .strip()
        .startswith("FAIL max_latency_ms @ jetson-orin-nano-8gb: 6 ms > limit 5 ms, over by 20.0%")
    )
    assert "rows by flops:" in message and "rows by roofline time:" in message
    table_rows = [line.split()[0] for line in message.splitlines() if line.startswith(("conv ", "relu "))]
    assert table_rows[:2] == ["conv", "relu"]  # sorted by FLOPs: the conv first


def test_on_a_real_report() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    report = layerprof.analyze(model, input_size=(1, 3, 16, 16), target="t4")
    # 2 * 8 * 16 * 16 * 3 * 9 = 110592 FLOPs = 1.10592e-4 GFLOPs
    (result,) = check(report, max_gflops=1e-4)
    assert result.value == pytest.approx(110592 / 1e9)
    assert result.excess == pytest.approx(0.10592)  # (1.10592e-4 - 1e-4) / 1e-4
    (latency,) = check(report, max_latency_ms=1.0)
    assert latency.value == report.total.roofline["t4"].roofline_time_ms
