"""Does the clock contradict the roofline? (a script, not a test; issue 10's proof).

For each model, batch and thread count, with this machine's ceilings measured afresh in the same run
(``measure_device(threads=N, cache=False)``), it profiles the model twice against that measured target,
once with the cache-aware roof (``cache_model=True``, the default) and once DRAM-only
(``cache_model=False``), and reports:

* **honest share**: of the timed rows over ``--min-ms`` (default 0.05 ms), the share whose roofline
  efficiency (roofline time / measured time) is at most 1.05, i.e. that did not run faster than the
  "lower bound" allows. Target: at least 95% with the cache model.
* **forward ratio**: predicted time of the whole forward (the totals' roofline time) / measured
  end-to-end forward. Target: within a factor of 2 (0.5 .. 1.0; a roof is a lower bound).
* **changed**: rows whose bound differs between the two models (e.g. ``memory`` -> ``memory(LLC)``).
* the worst rows left above their roof, with their efficiency and bound.

On a GPU (``--device cuda``) the same runs on resnet50 at batch 1 and 32, float32 and float16, against
the measured ceilings and against a table entry (``--table-target``, e.g. ``h100-sxm``).

Run ``python benchmarks/bench_roofline_honesty.py [--models resnet18,...] [--batches 1,8]
[--threads 1,2] [--repeat 7] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import layerprof
from layerprof.core.records import LayerRow

DEFAULT_MODELS = ("resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny")
EFFICIENCY_LIMIT = 1.05


def _model(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()  # type: ignore[no-any-return]


def honest_rows(rows: Sequence[LayerRow], target: str, min_ms: float) -> tuple[int, int, list[LayerRow]]:
    """(honest, timed, offenders): timed forward rows over ``min_ms`` and those at or under their roof."""
    timed = [
        r
        for r in rows
        if r.phase == "forward"
        and r.time_ms is not None
        and r.time_ms >= min_ms
        and r.roofline[target].roofline_efficiency is not None
    ]
    offenders = [r for r in timed if (r.roofline[target].roofline_efficiency or 0.0) > EFFICIENCY_LIMIT]
    return len(timed) - len(offenders), len(timed), offenders


def one_case(
    name: str,
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    *,
    repeat: int,
    min_ms: float,
) -> dict[str, Any]:
    label = target if isinstance(target, str) else target.name
    result: dict[str, Any] = {"model": name, "batch": int(inputs.shape[0]), "target": label}
    reports = {}
    for cache_model in (True, False):
        report = layerprof.profile(
            model, inputs, target=target, warmup=2, repeat=repeat, cache_model=cache_model
        )
        reports[cache_model] = report
        honest, timed, offenders = honest_rows(report.layers, label, min_ms)
        key = "cache" if cache_model else "dram"
        predicted = report.total.roofline[label].roofline_time_ms
        measured = report.total.time_ms  # the median end-to-end forward, without hooks
        result[key] = {
            "honest": honest,
            "timed": timed,
            "honest_share": honest / timed if timed else None,
            "predicted_ms": predicted,
            "measured_ms": measured,
            "forward_ratio": predicted / measured if measured else None,
            "worst": [
                {
                    "row": r.name,
                    "efficiency": round(r.roofline[label].roofline_efficiency or 0.0, 2),
                    "bound": r.roofline[label].bound,
                    "time_ms": round(r.time_ms or 0.0, 4),
                }
                for r in sorted(offenders, key=lambda r: -(r.roofline[label].roofline_efficiency or 0))[:3]
            ],
        }
    dram_bounds = {r.name: r.roofline[label].bound for r in reports[False].layers}
    changed = [
        f"{r.name}: {dram_bounds[r.name]} -> {r.roofline[label].bound}"
        for r in reports[True].layers
        if r.name in dram_bounds
        and dram_bounds[r.name] != r.roofline[label].bound.split("(")[0]
        and not (dram_bounds[r.name] == "memory" and r.roofline[label].bound == "memory(DRAM)")
    ]
    result["changed"] = len(changed)
    result["changed_examples"] = changed[:4]
    return result


def _line(case: dict[str, Any]) -> str:
    def share(part: dict[str, Any]) -> str:
        if part["honest_share"] is None:
            return "   -  "
        return f"{100 * part['honest_share']:5.1f}% ({part['honest']}/{part['timed']})"

    return (
        f"{case['model']:<20} b{case['batch']:<3} t{case.get('threads', '-')}  "
        f"honest cache {share(case['cache'])}  dram {share(case['dram'])}  "
        f"forward pred/meas cache {case['cache']['forward_ratio']:.2f} "
        f"dram {case['dram']['forward_ratio']:.2f}  "
        f"changed {case['changed']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-ms", type=float, default=0.05)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--table-target", default=None, help="also judge against this table entry")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    cases: list[dict[str, Any]] = []
    started = time.perf_counter()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("no CUDA device: nothing to do", file=sys.stderr)
            return 0
        spec = layerprof.measure_device("cuda", cache=False)
        targets: list[Any] = [spec] + ([args.table_target] if args.table_target else [])
        for dtype in (torch.float32, torch.float16):
            for batch in (1, 32):
                model = _model("resnet50").to("cuda", dtype)
                x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=dtype)
                for target in targets:
                    case = one_case("resnet50", model, x, target, repeat=args.repeat, min_ms=args.min_ms)
                    case["dtype"] = str(dtype).removeprefix("torch.")
                    cases.append(case)
                    print(_line(case), case["dtype"], case["target"], flush=True)
    else:
        previous = torch.get_num_threads()
        try:
            for threads in (int(t) for t in args.threads.split(",")):
                torch.set_num_threads(threads)
                spec = layerprof.measure_device("cpu", threads=threads, cache=False)
                print(
                    f"threads {threads}: measured {spec.memory_bandwidth_bytes_per_s / 1e9:.1f} GB/s DRAM, "
                    + ", ".join(
                        f"{lvl.name} {lvl.capacity_bytes / 2**20:.2f} MiB at "
                        f"{lvl.bandwidth_bytes_per_s / 1e9:.1f} GB/s"
                        for lvl in spec.cache_levels
                    )
                    + f", {spec.peak_flops_per_s('float32', 'matrix') / 1e9:.1f} GFLOP/s matrix",
                    flush=True,
                )
                for name in args.models.split(","):
                    model = _model(name)
                    for batch in (int(b) for b in args.batches.split(",")):
                        x = torch.randn(batch, 3, 224, 224)
                        case = one_case(name, model, x, spec, repeat=args.repeat, min_ms=args.min_ms)
                        case["threads"] = threads
                        cases.append(case)
                        print(_line(case), flush=True)
        finally:
            torch.set_num_threads(previous)

    def pooled(key: str) -> tuple[int, int]:
        return sum(c[key]["honest"] for c in cases), sum(c[key]["timed"] for c in cases)

    summary: dict[str, Any] = {"seconds": round(time.perf_counter() - started, 1)}
    for key in ("cache", "dram"):
        honest, timed = pooled(key)
        ratios = [c[key]["forward_ratio"] for c in cases if c[key]["forward_ratio"]]
        summary[key] = {
            "honest_share": honest / timed if timed else None,
            "honest": honest,
            "timed": timed,
            "forward_ratio_median": statistics.median(ratios) if ratios else None,
            "forward_ratio_range": [min(ratios), max(ratios)] if ratios else None,
        }
        share = f"{100 * honest / timed:.1f}%" if timed else "-"
        print(
            f"all cases, {'cache model' if key == 'cache' else 'DRAM only  '}: {share} of {timed} timed rows "
            f"honest; forward predicted/measured {min(ratios):.2f}..{max(ratios):.2f} "
            f"(median {statistics.median(ratios):.2f})"
            if ratios
            else f"{key}: nothing timed"
        )
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "cases": cases}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
