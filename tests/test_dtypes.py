"""One table of dtype spellings (core.dtypes.ALIASES): every caller reads a spelling the same way."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch

from layerprof.analysis.whatif import conv_cost
from layerprof.cli import audit, scale_cmd
from layerprof.cli.config import AuditConfig
from layerprof.core.dtypes import ALIASES, canonical_name, dtype_name, parse_dtype, peak_key
from layerprof.errors import InvalidArgumentError
from layerprof.hardware import measure
from layerprof.hardware.specs import PeakFallbackWarning, normalize_dtype
from layerprof.hardware.table import get_device

SPELLINGS = sorted(ALIASES)
# Each spelling as typed in lower case, in upper case, and with torch's prefix.
WRITTEN = [(form, ALIASES[name]) for name in SPELLINGS for form in (name, name.upper(), f"torch.{name}")]


def _peak_key_or_none(dtype: torch.dtype) -> str | None:
    try:
        return peak_key(dtype)
    except InvalidArgumentError:
        return None


@pytest.mark.parametrize(("spelling", "dtype"), WRITTEN, ids=[form for form, _ in WRITTEN])
def test_core_reads_every_spelling_as_its_dtype(spelling: str, dtype: torch.dtype) -> None:
    assert parse_dtype(spelling) is dtype
    assert canonical_name(spelling) == dtype_name(dtype) == canonical_name(dtype)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_device_table_reads_a_spelling_as_its_dtype(spelling: str) -> None:
    dtype = ALIASES[spelling]
    key = _peak_key_or_none(dtype)
    if key is None:  # int32 and the like: no peaks anywhere, refused the same way by name and by dtype
        for value in (spelling, dtype):
            with pytest.raises(InvalidArgumentError):
                normalize_dtype(value)
        return
    assert normalize_dtype(spelling) == normalize_dtype(dtype) == key
    h100 = get_device("h100-sxm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeakFallbackWarning)
        for unit in ("matrix", "vector"):
            assert h100.peak_flops_per_s(spelling, unit) == h100.peak_flops_per_s(dtype, unit)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_measure_device_reads_a_spelling_as_its_dtype(spelling: str) -> None:
    dtype = ALIASES[spelling]
    if _peak_key_or_none(dtype) is None:
        with pytest.raises(InvalidArgumentError):
            measure._dtype_keys([spelling])
        return
    assert measure._dtype_keys([spelling]) == measure._dtype_keys([dtype])


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_conv_cost_reads_a_spelling_as_its_dtype(spelling: str) -> None:
    dtype = ALIASES[spelling]
    if not dtype.is_floating_point:
        pytest.skip("conv_cost prices floating-point convolutions")
    assert conv_cost(3, 8, 16, 3, dtype=spelling) == conv_cost(3, 8, 16, 3, dtype=dtype)


@pytest.mark.parametrize("command", [audit, scale_cmd], ids=["audit", "scale"])
def test_the_cli_dtype_choices_come_from_the_table(command: object) -> None:
    choices: dict[str, str] = command.DTYPES  # type: ignore[attr-defined]
    assert choices, "no --dtype choices"
    for flag, name in choices.items():
        assert name == canonical_name(flag) == dtype_name(ALIASES[flag])


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_audit_reads_a_spelling_the_same_on_the_command_line_and_in_a_config(spelling: str) -> None:
    # --dtype half and dtype = "half" in pyproject.toml both price the model at float16.
    from_config = argparse.Namespace(dtype=None)
    config = AuditConfig(dtype=spelling)
    name = dtype_name(ALIASES[spelling])
    if name in audit.DTYPES.values():
        assert audit._dtype(from_config, config) == name
        assert audit._dtype(argparse.Namespace(dtype=audit._dtype_flag(spelling)), AuditConfig()) == name
    else:
        with pytest.raises(InvalidArgumentError, match="must be one of"):
            audit._dtype(from_config, config)
        with pytest.raises(argparse.ArgumentTypeError):
            audit._dtype_flag(spelling)
