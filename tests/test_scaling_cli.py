"""``layerprof scale``: memory per GPU, the largest per-GPU batch, --global-batch, bad input.

The expected figures are recomputed here from ``analyze`` of the same model (its memory footprint
and rows) and DDP's rule for its bucket buffers (one flat copy of every gradient on more than one
GPU), never read back from the prediction.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import layerprof
from layerprof.analysis.scaling import predict_scaling
from layerprof.analysis.scaling_global import predict_scaling_global
from layerprof.cli import main
from layerprof.core.units import binary_bytes
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device
from layerprof.models.demonet import demo_model

T4 = get_device("t4")
SIZE = (4, 3, 64, 64)


def _scale(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["scale", "layerprof:demo_model", "--input-size", ",".join(map(str, SIZE)), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_memory_per_gpu_and_the_largest_batch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _scale(
        capsys, "--target", "t4", "--link", "pcie3", "--optimizer", "adam", "--format", "json"
    )
    assert code == 0, err
    document = json.loads(out)
    model = demo_model().train()
    report = layerprof.analyze(model, input_size=SIZE, target=T4, backward=True, optimizer="adam")
    peak = report.memory_by_target["t4"].peak_bytes
    grads = sum(p.numel() for p in model.parameters()) * 4
    assert document["gradient_bytes"] == grads
    peaks = {row["gpus"]: row["peak_bytes"] for row in document["rows"]}
    assert peaks == {1: peak, 2: peak + grads, 4: peak + grads, 8: peak + grads}
    assert document["capacity_bytes"] == T4.memory_bytes
    found = document["max_batch_per_gpu"]

    def needs(batch: int) -> int:
        counted = layerprof.analyze(
            model, input_size=(batch, 3, 64, 64), target=T4, backward=True, optimizer="adam"
        )
        return counted.memory_by_target["t4"].peak_bytes + grads

    assert T4.memory_bytes is not None
    assert needs(found) <= T4.memory_bytes < needs(found + 1)
    # adam: read p, g, m, v and write p, m, v: 7 x 4 B per parameter over T4's DRAM bandwidth
    assert document["rows"][0]["optimizer_ms"] == pytest.approx(
        grads * 7 / T4.memory_bandwidth_bytes_per_s * 1e3
    )


def test_the_paragraph_is_built_from_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _scale(capsys, "--target", "t4", "--link", "pcie3", "--no-max-batch")
    assert code == 0, err
    paragraph = out.rstrip().splitlines()[-1]
    model = demo_model().train()
    report = layerprof.analyze(model, input_size=SIZE, target=T4, backward=True, optimizer="sgd")
    prediction = predict_scaling(report, link="pcie3", optimizer="sgd", model=model)
    eight = prediction.row(8)
    assert (
        f"multiplies throughput by {eight.speedup:.2f} ({eight.efficiency:.0%} efficiency on 8)" in paragraph
    )
    assert f"{binary_bytes(eight.peak_bytes or 0)} of {binary_bytes(T4.memory_bytes or 0)}" in paragraph
    assert "it fits." in paragraph
    # A link 1,000x slower: the paragraph says where the all-reduce stops being hidden.
    slow = replace(
        prediction.link, name="slow", bandwidth_bytes_per_s=prediction.link.bandwidth_bytes_per_s / 1000
    )
    slowed = predict_scaling(report, link=slow, optimizer="sgd", model=model)
    assert "no longer hidden" in slowed.paragraph()
    assert f"{slowed.row(8).exposed_ms:.3g} ms of {slowed.row(8).step_ms:.3g} ms" in slowed.paragraph()


def test_global_batch_splits_the_batch_and_each_row_is_its_own_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["scale", "layerprof:demo_model", "--input-size", "1,3,128,128", "--global-batch", "32"]
    code = main([*argv, "--gpus", "1,2,4", "--no-max-batch", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    document = json.loads(out)
    assert document["global_batch"] == 32
    rows = {row["gpus"]: row for row in document["rows"]}
    assert {n: row["batch_per_gpu"] for n, row in rows.items()} == {1: 32, 2: 16, 4: 8}
    model = demo_model().train()
    for gpus, row in rows.items():
        size = (32 // gpus, 3, 128, 128)
        per_gpu = layerprof.analyze(model, input_size=size, target="h100-sxm", backward=True, optimizer="sgd")
        weak = predict_scaling(per_gpu, gpus=(gpus,), link="nvlink4", optimizer="sgd", model=model).row(gpus)
        assert row["step_ms"] == pytest.approx(weak.step_ms)
        assert row["peak_bytes"] == weak.peak_bytes
        assert row["speedup"] == pytest.approx(rows[1]["step_ms"] / row["step_ms"])
        assert row["samples_per_s"] == pytest.approx(32 / (row["step_ms"] / 1e3))
    # The compute per GPU shrinks; the all-reduce of every gradient does not.
    assert rows[4]["compute_ms"] < rows[2]["compute_ms"] < rows[1]["compute_ms"]
    assert rows[4]["allreduce_ms"] > rows[2]["allreduce_ms"] > 0
    assert main([*argv, "--no-max-batch"]) == 0
    assert "Splitting a global batch of 32 over 1 to 8" in capsys.readouterr().out


def test_global_batch_in_the_library_refuses_uneven_splits() -> None:
    with pytest.raises(InvalidArgumentError, match=r"global_batch 12 does not split evenly over 8 GPUs"):
        predict_scaling_global(demo_model(), (1, 3, 32, 32), 12, gpus=(1, 2, 4, 8))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--global-batch", "10"], "--global-batch 10 does not split evenly over 4, 8 GPUs"),
        (["--global-batch", "0"], "--global-batch"),
        (["--global-batch", "x"], "'x'"),
        (["--global-batch", "16", "--batch", "4"], "--global-batch 16 and --batch 4"),
        (["--bucket-mb", "0"], "--bucket-mb"),
        (["--bucket-mb", "-3"], "'-3'"),
        (["--bucket-mb", "many"], "'many'"),
        (["--optimizer", "lion"], "'lion'"),
    ],
    ids=["uneven", "zero", "not-int", "both", "bucket-zero", "bucket-negative", "bucket-text", "optimizer"],
)
def test_bad_input_exits_2_naming_the_value(
    capsys: pytest.CaptureFixture[str], extra: list[str], named: str
) -> None:
    try:
        code = main(["scale", "layerprof:demo_model", *extra])
    except SystemExit as exit_:  # argparse's choices
        code = exit_.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert named in err
