"""The one TOML reader (layerprof.core.toml): device files and audit settings get the same errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import layerprof.core.toml
from layerprof.cli.config import read_config
from layerprof.core.toml import read_toml
from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError, LayerprofError
from layerprof.hardware.files import load_devices

# A PNG header: not UTF-8 text (0x89 cannot start a character), and a NUL byte after it.
BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"


def test_reads_a_document(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text('name = "x"\n[table]\nsize = [1, 2]\n', encoding="utf-8")
    assert read_toml(file) == {"name": "x", "table": {"size": [1, 2]}}


@pytest.mark.parametrize(
    "content",
    [BINARY, b'name = "x"\n\x00\n', b"max-gflops = = 3\n"],
    ids=["binary", "nul-byte", "bad-syntax"],
)
def test_an_unreadable_file_is_named(tmp_path: Path, content: bytes) -> None:
    file = tmp_path / "broken.toml"
    file.write_bytes(content)
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(str(file))}: not valid TOML") as caught:
        read_toml(file)
    assert caught.value.__cause__ is not None  # the parser's own words stay on the chain


def test_a_binary_file_says_it_is_not_text(tmp_path: Path) -> None:
    file = tmp_path / "image.toml"
    file.write_bytes(BINARY)
    with pytest.raises(InvalidArgumentError, match="not UTF-8 text"):
        read_toml(file)


def test_the_caller_chooses_the_error_class(tmp_path: Path) -> None:
    file = tmp_path / "image.toml"
    file.write_bytes(BINARY)
    with pytest.raises(InvalidDeviceSpecError, match=re.escape(str(file))):
        read_toml(file, invalid=InvalidDeviceSpecError)


def test_both_callers_name_a_binary_file(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    devices.write_bytes(BINARY)
    with pytest.raises(InvalidDeviceSpecError, match=re.escape(str(devices))):
        load_devices(devices)
    settings = tmp_path / "settings.toml"
    settings.write_bytes(BINARY)
    with pytest.raises(InvalidArgumentError, match=re.escape(str(settings))):
        read_config(settings)
    (tmp_path / "pyproject.toml").write_bytes(BINARY)  # found on its own, it still has to parse
    with pytest.raises(LayerprofError, match=re.escape("pyproject.toml: not valid TOML")):
        read_config(directory=tmp_path)


def test_without_a_parser_the_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layerprof.core.toml, "toml_parser", lambda: None)
    file = tmp_path / "devices.toml"
    file.write_text("[[devices]]\n", encoding="utf-8")
    named = re.escape(f"reading {str(file)!r} needs a TOML parser")
    with pytest.raises(InvalidArgumentError, match=named):
        read_toml(file)
    with pytest.raises(InvalidArgumentError, match="needs a TOML parser"):
        load_devices(file)
