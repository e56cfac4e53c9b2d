"""Reports as plain data: a dict (JSON) with a schema version and exact integers, and CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprof.core.records import ROW_FIELDS, LayerRow, Verdict
from layerprof.core.validate import path_arg

if TYPE_CHECKING:
    from layerprof.hardware.specs import DeviceSpec
    from layerprof.report.facade import AllreduceTime, Report
    from layerprof.report.memory import MemoryReport

SCHEMA_VERSION = 1

_ROW_FIELDS = [name for name in ROW_FIELDS if name != "roofline"]


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {f.name: _plain(getattr(verdict, f.name)) for f in fields(Verdict)}


def row_dict(row: LayerRow) -> dict[str, Any]:
    data = {name: _plain(getattr(row, name)) for name in _ROW_FIELDS}
    data["roofline"] = {name: verdict_dict(v) for name, v in row.roofline.items()}
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# What a report keeps of each target (report.schema.json's "device"), as DeviceSpec.to_dict() writes it.
_TARGET_FIELDS = (
    "name",
    "kind",
    "memory_bandwidth_bytes_per_s",
    "matrix_peak_flops_per_s",
    "vector_peak_flops_per_s",
    "measured",
)


def _device_dict(device: DeviceSpec) -> dict[str, Any]:
    spec = device.to_dict()
    return {key: spec[key] for key in _TARGET_FIELDS}


def to_dict(report: Report) -> dict[str, Any]:
    inputs = None
    if report.inputs is not None:
        inputs = {
            "positional": [
                None if s is None else {"shape": list(s.shape), "dtype": str(s.dtype).removeprefix("torch.")}
                for s in report.inputs.positional
            ],
            "keyword": {
                k: None
                if s is None
                else {"shape": list(s.shape), "dtype": str(s.dtype).removeprefix("torch.")}
                for k, s in report.inputs.keyword
            },
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "model": report.model_name,
        "inputs": inputs,
        "targets": [_device_dict(t) for t in report.targets],
        "coverage": report.coverage,
        "timed_on": sorted(report.timed_on),
        "kernel_time_ms": None if report.kernel_time_ms is None else dict(report.kernel_time_ms),
        "ranks": _ranks_dict(report),
        "allreduce": None if report.allreduce is None else _allreduce_dict(report.allreduce),
        "step": report.step,
        "memory": None if report.memory is None else memory_dict(report.memory),
        "memory_by_target": {name: memory_dict(m) for name, m in report.memory_by_target.items()},
        "unsupported": dict(report.unsupported),
        "layers": [row_dict(r) for r in report.layers],
        "total": row_dict(report.total),
    }


def memory_dict(memory: MemoryReport) -> dict[str, Any]:
    data = {f.name: _plain(getattr(memory, f.name)) for f in fields(memory) if f.name != "phases"}
    data["phases"] = {
        name: {f.name: getattr(s, f.name) for f in fields(s)} for name, s in memory.phases.items()
    }
    return data


def _ranks_dict(report: Report) -> dict[str, Any] | None:
    ranks = report.ranks
    if ranks is None:
        return None
    return {
        "world_size": ranks.world_size,
        "straggler_threshold": ranks.straggler_threshold,
        "total_ms": list(ranks.total_ms),
        "rows": [
            {"phase": phase, "name": name, "time_ms": list(times)}
            for (phase, name), times in ranks.rows_ms.items()
        ],
    }


def _allreduce_dict(allreduce: AllreduceTime) -> dict[str, Any]:
    return {f.name: getattr(allreduce, f.name) for f in fields(allreduce)}


def _write(text: str, path: str | Path | None) -> str:
    if path is not None:
        path_arg("path", path).write_text(text, encoding="utf-8")
    return text


def to_json(report: Report, path: str | Path | None = None, *, indent: int | None = 2) -> str:
    return _write(json.dumps(to_dict(report), indent=indent) + "\n", path)


def csv_columns(report: Report) -> list[str]:
    columns = list(_ROW_FIELDS)
    for target in report.targets:
        columns += [f"{key}@{target.name}" for key in ("bound", "roofline_time_ms", "roofline_efficiency")]
    return columns


def to_csv(report: Report, path: str | Path | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["schema_version", *csv_columns(report)])
    for row in (*report.layers, report.total):
        cells: list[Any] = [SCHEMA_VERSION]
        for name in _ROW_FIELDS:
            value = getattr(row, name)
            cells.append(
                "x".join(str(v) for v in value)
                if isinstance(value, tuple) and name == "kernel_size"
                else json.dumps(_plain(value))
                if isinstance(value, tuple)
                else value
            )
        for target in report.targets:
            verdict = row.roofline.get(target.name)
            cells += (
                [None, None, None]
                if verdict is None
                else [verdict.bound, verdict.roofline_time_ms, verdict.roofline_efficiency]
            )
        writer.writerow(["" if c is None else c for c in cells])
    return _write(buffer.getvalue(), path)
