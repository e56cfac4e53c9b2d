"""Roofline arithmetic: the seed's worked numbers, verdicts at/below/above the ridge, flags, TF32."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_device
from layerprof.roofline.model import (
    allow_tf32_for,
    operational_intensity,
    ridge_point,
    roofline_time_s,
    verdict,
)

GTX_PEAK = 8.8e12  # FLOP/s, fp32, matrix = vector (seed)
GTX_BANDWIDTH = 320e9  # B/s (seed)


@pytest.fixture
def gtx() -> DeviceSpec:
    return get_device("gtx1080")


# --- the seed's worked examples -------------------------------------------------------------------


def test_dot_product_intensity_is_a_quarter() -> None:
    n = 10**6
    flops = 2 * n  # n multiplies + n adds
    bytes_moved = 2 * n * 4  # two float32 vectors read
    assert operational_intensity(flops, bytes_moved) == 0.25


def test_matrix_vector_intensity_is_about_a_half() -> None:
    n = 10**4
    flops = 2 * n**2
    bytes_moved = (n**2 + 2 * n) * 4  # matrix + input vector + output vector, float32
    assert operational_intensity(flops, bytes_moved) == pytest.approx(0.5, rel=1e-3)
    assert operational_intensity(flops, bytes_moved) < 0.5


def test_matrix_matrix_intensity_is_n_over_six() -> None:
    n = 600
    flops = 2 * n**3
    bytes_moved = 3 * n**2 * 4  # A, B read and C written once, float32
    assert operational_intensity(flops, bytes_moved) == pytest.approx(n / 6)  # 100 FLOP/B


def test_seed_examples_on_the_gtx1080(gtx: DeviceSpec) -> None:
    n = 10**6
    dot = verdict("gtx1080", gtx, flops=2 * n, matrix_flops=0, bytes_moved=2 * n * 4, dtype=torch.float32)
    assert dot.bound == "memory"
    assert dot.roofline_time_ms == pytest.approx(2 * n * 4 / GTX_BANDWIDTH * 1e3)
    m = 600
    matmul = verdict(
        "gtx1080", gtx, flops=2 * m**3, matrix_flops=2 * m**3, bytes_moved=3 * m**2 * 4, dtype=torch.float32
    )
    assert matmul.bound == "compute"  # 100 FLOP/B > ridge 27.5
    assert matmul.roofline_time_ms == pytest.approx(2 * m**3 / GTX_PEAK * 1e3)


def test_intensity_of_nothing_moved_is_zero() -> None:
    assert operational_intensity(5, 0) == 0.0
    with pytest.raises(InvalidArgumentError, match="-1"):
        operational_intensity(-1, 8)


# --- ridge and roofline time --------------------------------------------------------------------


def test_ridge_point_function(gtx: DeviceSpec) -> None:
    assert ridge_point(gtx, torch.float32, "matrix") == GTX_PEAK / GTX_BANDWIDTH == 27.5
    assert ridge_point("xeon-e5345", "float32", "vector") == 75e9 / 10e9


def test_roofline_time_is_max_of_compute_and_memory(gtx: DeviceSpec) -> None:
    # compute: 8.8e9 / 8.8e12 = 1 ms; memory: 64e6 / 320e9 = 0.2 ms
    assert roofline_time_s(8.8e9, 0, 64e6, gtx, torch.float32) == pytest.approx(1e-3)
    # compute: 8.8e8 / 8.8e12 = 0.1 ms; memory: 320e6 / 320e9 = 1 ms
    assert roofline_time_s(4.4e8, 4.4e8, 320e6, gtx, torch.float32) == pytest.approx(1e-3)
    # matrix and vector add up: T4 fp16, 6.5e9 / 65e12 + 1.62e9 / 16.2e12 = 0.2 ms
    assert roofline_time_s(6.5e9, 1.62e9, 0, "t4", torch.float16) == pytest.approx(2e-4)


# --- verdicts -----------------------------------------------------------------------------------

BYTES = 1_000_000


@pytest.mark.parametrize(
    ("flops", "bound", "time_ms"),
    [
        (27.5 * BYTES, "compute", 27.5 * BYTES / GTX_PEAK * 1e3),  # at the ridge counts as compute
        (27 * BYTES, "memory", BYTES / GTX_BANDWIDTH * 1e3),  # just below: memory roof
        (28 * BYTES, "compute", 28 * BYTES / GTX_PEAK * 1e3),  # just above: compute roof
    ],
    ids=["at-ridge", "below-ridge", "above-ridge"],
)
def test_verdict_around_the_ridge(gtx: DeviceSpec, flops: float, bound: str, time_ms: float) -> None:
    result = verdict("gtx1080", gtx, flops=flops, matrix_flops=flops, bytes_moved=BYTES, dtype=torch.float32)
    assert result.target == "gtx1080"
    assert result.unit == "matrix"
    assert result.ridge_point == 27.5
    assert result.bound == bound
    assert result.roofline_time_ms == pytest.approx(time_ms)
    assert result.achieved_flops_per_s is None
    assert result.roofline_efficiency is None
    assert result.flags == ()


def test_mixed_matrix_and_vector_row() -> None:
    t4 = get_device("t4")
    matrix_flops = 6.5e9  # 0.1 ms at 65e12 (fp16 tensor cores)
    vector_flops = 1.62e9  # 0.1 ms at 16.2e12 (fp16 CUDA cores)
    bytes_moved = 32e6  # 0.1 ms at 320e9
    result = verdict(
        "t4",
        t4,
        flops=matrix_flops + vector_flops,
        matrix_flops=matrix_flops,
        bytes_moved=bytes_moved,
        dtype=torch.float16,
    )
    assert result.unit == "matrix"  # 6.5e9 >= 1.62e9
    assert result.roofline_time_ms == pytest.approx(0.2)  # 0.1 + 0.1 compute > 0.1 memory
    # blended ridge: (8.12e9 FLOP / 2e-4 s) / 320e9 B/s = 126.875 FLOP/B
    assert result.ridge_point == pytest.approx((8.12e9 / 2e-4) / 320e9)
    assert t4.ridge_point(torch.float16, "vector") < result.ridge_point < t4.ridge_point(torch.float16)
    assert result.bound == "compute"  # intensity 253.75 >= 126.875


def test_vector_dominated_row_uses_the_vector_unit(gtx: DeviceSpec) -> None:
    result = verdict("gtx1080", gtx, flops=10, matrix_flops=4, bytes_moved=40, dtype=torch.float32)
    assert result.unit == "vector"
    assert result.bound == "memory"  # 0.25 FLOP/B


def test_row_without_flops_uses_the_vector_ridge() -> None:
    t4 = get_device("t4")
    result = verdict("t4", t4, flops=0, matrix_flops=0, bytes_moved=BYTES, dtype=torch.float16)
    assert result.unit == "vector"
    assert result.ridge_point == 16.2e12 / 320e9
    assert result.bound == "memory"
    assert result.roofline_time_ms == pytest.approx(BYTES / 320e9 * 1e3)


def test_timed_row_gets_achieved_rate_and_efficiency(gtx: DeviceSpec) -> None:
    flops = 8.8e9  # roofline 1 ms on the gtx1080
    result = verdict(
        "gtx1080", gtx, flops=flops, matrix_flops=flops, bytes_moved=BYTES, dtype=torch.float32, time_ms=2.0
    )
    assert result.achieved_flops_per_s == pytest.approx(flops / 2e-3)  # 4.4 TFLOP/s
    assert result.roofline_efficiency == pytest.approx(1.0 / 2.0)
    assert result.flags == ()


@pytest.mark.parametrize(
    ("time_ms", "flags"),
    [(0.9, ("above-roof",)), (0.96, ()), (1.0, ())],
    ids=["11pct-faster", "4pct-faster", "at-roof"],
)
def test_above_roof_flag(gtx: DeviceSpec, time_ms: float, flags: tuple[str, ...]) -> None:
    flops = 8.8e9  # roofline 1 ms
    result = verdict(
        "gtx1080", gtx, flops=flops, matrix_flops=flops, bytes_moved=BYTES, dtype="fp32", time_ms=time_ms
    )
    assert result.flags == flags
    assert result.roofline_efficiency == pytest.approx(1.0 / time_ms)


def test_too_short_rows_are_not_judged(gtx: DeviceSpec) -> None:
    result = verdict(
        "gtx1080", gtx, flops=100, matrix_flops=100, bytes_moved=100, dtype="fp32", time_ms=0.004
    )
    assert result.flags == ("too-short",)
    assert result.achieved_flops_per_s is None
    assert result.roofline_efficiency is None
    longer_floor = verdict(
        "gtx1080",
        gtx,
        flops=100,
        matrix_flops=100,
        bytes_moved=100,
        dtype="fp32",
        time_ms=0.5,
        min_time_ms=1.0,
    )
    assert longer_floor.flags == ("too-short",)


def test_verdict_takes_a_device_name() -> None:
    result = verdict("a", "gtx1080", flops=1, matrix_flops=1, bytes_moved=1, dtype="fp32")
    assert result.ridge_point == 27.5


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"flops": -1, "matrix_flops": 0, "bytes_moved": 1}, "flops"),
        ({"flops": 1, "matrix_flops": 2, "bytes_moved": 1}, "exceeds"),
        ({"flops": 1, "matrix_flops": 1, "bytes_moved": -8}, "bytes_moved"),
        ({"flops": 1, "matrix_flops": 1, "bytes_moved": 8, "time_ms": -1.0}, "time_ms"),
    ],
    ids=["negative-flops", "matrix-over-total", "negative-bytes", "negative-time"],
)
def test_verdict_refuses_bad_counts(gtx: DeviceSpec, kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment):
        verdict(
            "gtx1080",
            gtx,
            dtype=torch.float32,
            flops=kwargs["flops"],
            matrix_flops=kwargs["matrix_flops"],
            bytes_moved=kwargs["bytes_moved"],
            time_ms=kwargs.get("time_ms"),
        )


# --- TF32 ---------------------------------------------------------------------------------------


@pytest.fixture
def tf32_flags(torch_flags_restored: object) -> Callable[..., None]:
    def set_flags(*, conv: bool, matmul: bool) -> None:
        torch.backends.cudnn.allow_tf32 = conv
        torch.backends.cuda.matmul.allow_tf32 = matmul

    return set_flags


def test_allow_tf32_follows_torch_flags(tf32_flags: Callable[..., None]) -> None:
    tf32_flags(conv=False, matmul=False)
    assert not allow_tf32_for("gpu")
    tf32_flags(conv=True, matmul=False)
    assert allow_tf32_for("gpu")
    assert allow_tf32_for("gpu", "conv")
    assert not allow_tf32_for("gpu", "matmul")
    tf32_flags(conv=False, matmul=True)
    assert allow_tf32_for("gpu", "matmul")
    assert not allow_tf32_for("gpu", "conv")
    tf32_flags(conv=True, matmul=True)
    assert not allow_tf32_for("cpu")
    with pytest.raises(InvalidArgumentError, match="'tpu'"):
        allow_tf32_for("tpu")


def test_tf32_is_used_for_float32_matrix_work_only_when_allowed(tf32_flags: Callable[..., None]) -> None:
    a100 = get_device("a100-40gb")
    flops = 156e9  # 1 ms at the TF32 peak, 8 ms at the IEEE fp32 peak

    def matrix_time_ms(dtype: torch.dtype) -> float:
        allow = allow_tf32_for(a100.kind)
        result = verdict(
            "a100", a100, flops=flops, matrix_flops=flops, bytes_moved=1, dtype=dtype, allow_tf32=allow
        )
        return result.roofline_time_ms

    tf32_flags(conv=False, matmul=False)
    assert matrix_time_ms(torch.float32) == pytest.approx(flops / 19.5e12 * 1e3)
    tf32_flags(conv=True, matmul=True)
    assert matrix_time_ms(torch.float32) == pytest.approx(flops / 156e12 * 1e3)
    assert matrix_time_ms(torch.float16) == pytest.approx(flops / 312e12 * 1e3)  # not a float32 row
    vector_row = verdict(
        "a100", a100, flops=flops, matrix_flops=0, bytes_moved=1, dtype="fp32", allow_tf32=True
    )
    assert vector_row.roofline_time_ms == pytest.approx(flops / 19.5e12 * 1e3)  # TF32 is matrix-only
