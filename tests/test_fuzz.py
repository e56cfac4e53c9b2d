"""Property-based bad input (Hypothesis): every generated bad value ends in a LayerprofError (API) or in
one line on stderr and exit 2 (CLI); never another exception, never a traceback, never exit 0 or 1;
and the model's state_dict, hook dictionaries, training flag and the RNG come out bitwise unchanged.

Strategies are built from the public signatures: for each argument, values of every Python kind
that argument does not take. The example counts are bounded (and derandomized) so the suite stays
fast and CI sees the same examples every run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import layerprof
from layerprof.cli import main
from layerprof.core.dtypes import ALIASES
from layerprof.errors import LayerprofError
from layerprof.hardware.table import device_table

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- values of every kind -----------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=0),
    st.integers(min_value=10**19, max_value=10**40),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.lists(st.one_of(st.floats(), st.text(max_size=3), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: junk that is not a usable count either: no positive ints (10**19 is a valid, if absurd, repeat).
not_a_count = junk.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v > 0))
not_a_device = st.text(max_size=16).filter(lambda s: s.strip().lower() not in device_table() and s != "auto")
bad_size = st.one_of(
    junk,
    st.lists(st.integers(min_value=-5, max_value=0), min_size=1, max_size=4),
    st.lists(st.integers(min_value=10**10, max_value=10**12), min_size=3, max_size=4),  # past int64 bytes
    st.tuples(st.integers(1, 4), st.floats(0.5, 3.5)),
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5)).train()


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "params": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "hooks": [
            len(getattr(m, name))
            for m in model.modules()
            for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
        ],
        "rng": torch.get_rng_state().clone(),
    }


def _assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["training"] == after["training"]
    assert before["hooks"] == after["hooks"]
    assert torch.equal(before["rng"], after["rng"])
    assert before["params"].keys() == after["params"].keys()
    for key, value in before["params"].items():
        assert torch.equal(value, after["params"][key]), key


def _refused(call: Callable[[], object], model: nn.Module) -> None:
    before = _state(model)
    with pytest.raises(LayerprofError):
        call()
    _assert_same(before, _state(model))


# -- the API ------------------------------------------------------------------------------------


@FUZZ
@given(size=bad_size)
def test_analyze_input_size(size: Any) -> None:
    model = _model()
    _refused(lambda: layerprof.analyze(model, input_size=size), model)


@FUZZ
@given(
    dtype=st.one_of(
        junk.filter(lambda v: v is not None),
        st.text(max_size=10).filter(lambda s: s.strip().lower() not in ALIASES),
    )
)
def test_analyze_dtype(dtype: Any) -> None:
    model = _model()
    _refused(lambda: layerprof.analyze(model, input_size=(1, 3, 8, 8), dtype=dtype), model)


@FUZZ
@given(
    target=st.one_of(
        not_a_device,
        st.integers(),
        st.floats(),
        st.binary(max_size=4),
        st.lists(st.integers(), min_size=1, max_size=2),
    )
)
def test_analyze_target(target: Any) -> None:
    model = _model()
    _refused(lambda: layerprof.analyze(model, input_size=(1, 3, 8, 8), target=target), model)


@FUZZ
@given(inputs=junk.filter(lambda v: v is not None))
def test_analyze_inputs(inputs: Any) -> None:
    model = _model()
    _refused(lambda: layerprof.analyze(model, inputs), model)


@FUZZ
@given(field=st.sampled_from(["warmup", "repeat"]), value=not_a_count)
def test_profile_counts(field: str, value: Any) -> None:
    model = _model()
    if field == "warmup" and isinstance(value, int) and not isinstance(value, bool) and value == 0:
        value = -1  # warmup=0 is allowed
    x = torch.randn(1, 3, 8, 8)
    _refused(lambda: layerprof.profile(model, x, target="t4", **{field: value}), model)


@FUZZ
@given(every=not_a_count)
def test_watch_every(every: Any) -> None:
    model = _model()
    _refused(lambda: layerprof.watch(model, every=every, target="t4"), model)


@FUZZ
@given(
    field=st.sampled_from(
        ["in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups", "batch"]
    ),
    value=not_a_count,
)
def test_conv_cost(field: str, value: Any) -> None:
    arguments: dict[str, Any] = {"in_channels": 4, "out_channels": 4, "input_size": (8, 8), "kernel_size": 3}
    arguments[field] = value
    with pytest.raises(LayerprofError):
        layerprof.conv_cost(**arguments)


@FUZZ
@given(name=st.one_of(not_a_device, st.integers(), st.none(), st.binary(max_size=4)))
def test_get_device(name: Any) -> None:
    with pytest.raises(LayerprofError):
        layerprof.get_device(name)


@FUZZ
@given(field=st.sampled_from(["depth", "top", "sort", "fmt"]), value=not_a_count)
def test_report_table(field: str, value: Any) -> None:
    report = layerprof.analyze(_model(), input_size=(1, 3, 8, 8), target="t4")
    if value is None or (field == "depth" and value == 0):
        value = -1  # None (every field's default) and depth=0 are valid
    with pytest.raises(LayerprofError):
        report.table(**{field: value})


@FUZZ
@given(gpus=not_a_count.filter(lambda v: not isinstance(v, list) or not v))
def test_predict_scaling_gpus(gpus: Any) -> None:
    report = layerprof.analyze(_model(), input_size=(2, 3, 8, 8), target="t4", backward=True)
    with pytest.raises(LayerprofError):
        layerprof.predict_scaling(report, gpus=gpus, target="t4", link="pcie4")


# -- the command line ---------------------------------------------------------------------------

MODEL_FILE = """
from torch import nn

def tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
"""

text_junk = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=14
)


def _not_positive_sizes(text: str) -> bool:
    parts = text.split(",")
    return not all(p.strip().isdigit() and 0 < int(p) < 10**6 for p in parts)


def _not_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return True
    return not math.isfinite(value) or value < 0


CLI_OPTIONS: dict[str, st.SearchStrategy[str]] = {
    "--input-size": text_junk.filter(_not_positive_sizes),
    "--dtype": text_junk.filter(lambda s: s.strip().lower() not in ALIASES),
    "--target": text_junk.filter(lambda s: s.strip().lower() not in device_table() and s != "auto"),
    "--depth": st.one_of(
        st.integers(max_value=-1).map(str), text_junk.filter(lambda s: not s.strip().isdigit())
    ),
    "--top": st.one_of(
        st.integers(max_value=0).map(str), text_junk.filter(lambda s: not s.strip().isdigit())
    ),
    "--format": text_junk.filter(lambda s: s not in ("table", "markdown", "json", "csv", "html")),
    "--max-gflops": text_junk.filter(_not_number),
    "--max-memory-bound-share": st.one_of(st.floats(1.01, 1e9).map(repr), text_junk.filter(_not_number)),
    "--repeat": st.one_of(
        st.integers(max_value=0).map(str), text_junk.filter(lambda s: not s.strip().isdigit())
    ),
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz_models.py"
    path.write_text(MODEL_FILE, encoding="utf-8")
    return path


@FUZZ
@given(option=st.sampled_from(sorted(CLI_OPTIONS)), data=st.data())
def test_audit_options(
    model_file: Path, capsys: pytest.CaptureFixture[str], option: str, data: st.DataObject
) -> None:
    value = data.draw(CLI_OPTIONS[option], label=option)
    argv = [
        "audit",
        f"{model_file}:tiny",
        "--input-size",
        "1,3,8,8",
        "--target",
        "t4",
        "--quiet",
        f"{option}={value}",
    ]
    if option == "--repeat":
        argv.append("--time")
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (argv, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err


@FUZZ
@given(value=text_junk.filter(lambda s: "%" not in s and _not_number(s)))
def test_compare_max_regression(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    folder = tmp_path_factory.mktemp("cmp")
    report = layerprof.analyze(_model().eval(), input_size=(1, 3, 8, 8), target="t4")
    report.to_json(folder / "a.json")
    code = main(["compare", str(folder / "a.json"), str(folder / "a.json"), f"--max-regression={value}"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
