"""The shipped JSON Schema (layerprof/report/data/report.schema.json) describes report.to_json()."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import layerprof
from layerprof.core.records import ROW_FIELDS, Verdict
from layerprof.report.export import SCHEMA_VERSION

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = (
        resources.files("layerprof.report").joinpath("data", "report.schema.json").read_text(encoding="utf-8")
    )
    return json.loads(text)  # type: ignore[no-any-return]


def validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(document)


def errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.relu(self.bn(self.conv(x)))
        return out * scale if scale is not None else out


def test_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_schema_lists_every_row_and_verdict_field(schema: dict[str, Any]) -> None:
    # A field added to LayerRow or Verdict reaches the JSON through export.py: the schema must follow.
    assert set(schema["$defs"]["row"]["properties"]) == set(ROW_FIELDS)
    assert set(schema["$defs"]["row"]["required"]) == set(ROW_FIELDS)
    assert set(schema["$defs"]["verdict"]["properties"]) == {f.name for f in fields(Verdict)}


@pytest.mark.parametrize(
    ("target", "dtype"),
    [(None, None), ("t4", None), (["t4", "jetson-orin-nano-8gb", "xeon-8480plus"], "fp16"), ("a100", "bf16")],
    ids=["no-target", "t4", "three-targets-fp16", "a100-bf16"],
)
def test_analyze_reports_validate(schema: dict[str, Any], target: Any, dtype: str | None) -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    report = layerprof.analyze(model, input_size=(2, 3, 16, 16), target=target, dtype=dtype)
    validate(json.loads(report.to_json()), schema)


def test_real_inputs_with_keyword_and_torchvision(schema: dict[str, Any]) -> None:
    report = layerprof.analyze(
        TwoInputs(), {"x": torch.randn(1, 3, 8, 8), "scale": torch.ones(1)}, target="t4"
    )
    document = json.loads(report.to_json())
    assert set(document["inputs"]["keyword"]) == {"x", "scale"}
    validate(document, schema)
    torchvision = pytest.importorskip("torchvision")
    resnet = layerprof.analyze(torchvision.models.resnet18(), input_size=(1, 3, 64, 64), target="t4")
    validate(json.loads(resnet.to_json()), schema)


def test_cli_json_validates(
    schema: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from layerprof.cli import main

    out = tmp_path / "r.json"
    argv = ["audit", "torchvision:resnet18", "--input-size", "1,3,64,64", "--target", "t4", "--target", "l4"]
    assert main([*argv, "--dtype", "fp16", "--output", str(out)]) == 0
    capsys.readouterr()
    validate(json.loads(out.read_text()), schema)


def test_timed_report_validates(schema: dict[str, Any]) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    report = layerprof.profile(model, torch.randn(1, 3, 16, 16), target="t4", warmup=1, repeat=3)
    document = json.loads(report.to_json())
    assert document["total"]["time_ms"] > 0
    validate(document, schema)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema_version",), 2),
        (("layers", 0, "flops"), -1),
        (("layers", 0, "flops"), 1.5),
        (("layers", 0, "phase"), "sideways"),
        (("layers", 0, "roofline", "t4", "bound"), "fast"),
        (("total", "time_ms"), "soon"),
        (("targets", 0, "kind"), "tpu"),
        (("layers", 0, "surprise"), 1),
    ],
    ids=["version", "negative-flops", "float-flops", "phase", "bound", "time", "device-kind", "extra-field"],
)
def test_schema_rejects_broken_reports(schema: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    report = layerprof.analyze(nn.Conv2d(3, 4, 3), input_size=(1, 3, 8, 8), target="t4")
    document = copy.deepcopy(json.loads(report.to_json()))
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(document, schema)
