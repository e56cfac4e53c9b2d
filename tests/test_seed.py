"""The seed's worked figures (seed/DIGEST.md), exactly: dot product, matrix-vector, matrix-matrix, ridges.

The seed counts the bytes an operation reads: a dot product of two n-float32 vectors is 2n FLOPs over
2 * n * 4 bytes, intensity 1/4. layerprof also counts the one scalar it writes (4 bytes), so its row
intensity is 2n / (8n + 4): 1/4 to within 1e-6 for n = 10**6.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

import layerprof
from layerprof import LayerRow, Report
from models import Dot, MatMul, MatVec

F32 = 4


def only_row(report: Report) -> LayerRow:
    (row,) = report.layers
    return row


def test_dot_product_intensity_is_one_quarter() -> None:
    n = 10**6
    row = only_row(layerprof.analyze(Dot(), input_size=[(n,), (n,)]))
    assert row.flops == row.matrix_flops == 2 * n
    assert row.bytes_read == 2 * n * F32
    assert row.bytes_written == 1 * F32  # the scalar result
    assert Fraction(row.flops, row.bytes_read) == Fraction(1, 4)  # the seed's figure: reads only
    assert row.intensity == pytest.approx(1 / 4, abs=1e-6)
    assert row.intensity == 2 * n / (2 * n * F32 + F32)


def test_matrix_vector_intensity_is_about_one_half() -> None:
    n = 4096
    row = only_row(layerprof.analyze(MatVec(), input_size=[(n, n), (n,)]))
    assert row.flops == 2 * n * n
    assert row.bytes_read + row.bytes_written == (n * n + 2 * n) * F32
    assert row.intensity == 2 * n * n / ((n * n + 2 * n) * F32)  # = n / (2n + 4)
    assert row.intensity == pytest.approx(1 / 2, rel=1e-3)


@pytest.mark.parametrize("n", [64, 1024, 4096])
def test_matrix_matrix_intensity_is_n_over_six(n: int) -> None:
    row = only_row(layerprof.analyze(MatMul(), input_size=[(n, n), (n, n)]))
    assert row.flops == row.matrix_flops == 2 * n**3
    assert row.bytes_read == 2 * n * n * F32
    assert row.bytes_written == n * n * F32
    assert Fraction(row.flops, row.bytes_read + row.bytes_written) == Fraction(n, 6)
    assert row.intensity == pytest.approx(n / 6, rel=1e-12)


@pytest.mark.parametrize(
    ("device", "ridge"),
    [
        pytest.param("gtx1080", 8.8e12 / 320e9, id="gtx1080-27.5"),  # 8.8 TFLOP/s over 320 GB/s
        pytest.param("xeon-e5345", 75e9 / 10e9, id="xeon-e5345-7.5"),  # 75 GFLOP/s over 10 GB/s
    ],
)
def test_ridge_points(device: str, ridge: float) -> None:
    spec = layerprof.get_device(device)
    assert spec.ridge_point("float32", "matrix") == pytest.approx(ridge, rel=1e-12)
    assert spec.ridge_point("float32") == pytest.approx(
        {"gtx1080": 27.5, "xeon-e5345": 7.5}[device], rel=1e-12
    )


def test_dot_product_is_memory_bound_on_gtx1080_and_big_matmul_compute_bound() -> None:
    # The seed's roofline is the DRAM-only one (cache_model=False): intensity against the ridge.
    dot = only_row(
        layerprof.analyze(Dot(), input_size=[(10**6,), (10**6,)], target="gtx1080", cache_model=False)
    )
    assert dot.bound == "memory"
    # n / 6 >= 27.5 from n = 165 on: 1024 x 1024 is compute-bound, 64 x 64 (10.7) is not.
    sizes = {"target": "gtx1080", "cache_model": False}
    big = only_row(layerprof.analyze(MatMul(), input_size=[(1024, 1024), (1024, 1024)], **sizes))  # type: ignore[arg-type]
    small = only_row(layerprof.analyze(MatMul(), input_size=[(64, 64), (64, 64)], **sizes))  # type: ignore[arg-type]
    assert big.bound == "compute"
    assert small.bound == "memory"
    # With the cache model the 8 MB vectors still come from DRAM (above the 2 MiB L2).
    cached = only_row(layerprof.analyze(Dot(), input_size=[(10**6,), (10**6,)], target="gtx1080"))
    assert cached.bound == "memory(DRAM)"
