"""A .pt2 archive that torch.export.load would turn into running code is refused before it loads.

Each archive is crafted here from a real torch.export.save of a tiny CNN: a pickled payload that
would write a marker file when unpickled is added where torch's loader unpickles it with plain
pickle (opaque objects), with TorchScript's unpickler (custom objects), or as compiled code. The
first test proves the payload is real: torch.export.load itself runs it.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from layerprof.cli.loader import load_model
from layerprof.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[1]


class _Marker:
    """Unpickling this writes a file: the stand-in for a shell command."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.path), "pwned"))  # type: ignore[return-value]


def _exported(tmp_path: Path) -> Path:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 8, 8),)), path)
    return path


def _rewritten(
    source: Path, target: Path, *, config_entry: tuple[str, str] | None, extra: dict[str, bytes]
) -> Path:
    """A copy of ``source`` with one more payload-config entry and extra files (names inside the root)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        root = original.namelist()[0].split("/")[0]
        for info in original.infolist():
            data = original.read(info)
            if config_entry and info.filename.endswith("_constants_config.json"):
                document = json.loads(data)
                fqn, path_name = config_entry
                document["config"][fqn] = {
                    "path_name": path_name,
                    "is_param": False,
                    "use_pickle": True,
                    "tensor_meta": None,
                }
                data = json.dumps(document).encode()
            copy.writestr(info, data)
        for name, payload in extra.items():
            copy.writestr(f"{root}/{name}", payload)
    return target


def _opaque_archive(tmp_path: Path, marker: Path) -> Path:
    return _rewritten(
        _exported(tmp_path),
        tmp_path / "evil.pt2",
        config_entry=("evil", "opaque_obj_0"),
        extra={"data/constants/opaque_obj_0": pickle.dumps(_Marker(marker))},
    )


def test_the_crafted_payload_runs_under_torch_export_load(tmp_path: Path) -> None:
    # Without the guard, torch runs it (in a child process, so nothing leaks into this one).
    marker = tmp_path / "marker.txt"
    archive = _opaque_archive(tmp_path, marker)
    code = (
        "import sys, torch; sys.path.insert(0, sys.argv[2]); import test_pt2_guard; "
        "torch.export.load(sys.argv[1])"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(archive), str(ROOT / "tests")],
        capture_output=True,
        check=False,
        timeout=300,
        env={"TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1", "PATH": "/usr/bin:/bin"},
    )
    assert marker.read_text() == "pwned"  # even with torch's weights-only switch on


def test_an_opaque_object_is_refused_before_loading(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    archive = _opaque_archive(tmp_path, marker)
    with pytest.raises(
        ModelLoadError, match=r"archive entry .*opaque_obj_0.* would be unpickled outside weights-only"
    ):
        load_model(str(archive))
    assert not marker.exists()


def test_a_config_pointing_at_an_unpickled_name_is_refused(tmp_path: Path) -> None:
    # The loader picks its reader from the path name in the config, whatever the file is called.
    archive = _rewritten(
        _exported(tmp_path), tmp_path / "evil.pt2", config_entry=("evil", "custom_obj_7"), extra={}
    )
    with pytest.raises(ModelLoadError, match=r"points 'evil' at 'custom_obj_7', which would be unpickled"):
        load_model(str(archive))


@pytest.mark.parametrize(
    "name",
    [
        "data/aotinductor/model/model.so",
        "data/executorch/program.pte",
        "data/constants/custom_obj_0",
        "data/constants/opaque_obj_3",
    ],
)
def test_compiled_code_and_custom_objects_are_refused(tmp_path: Path, name: str) -> None:
    archive = _rewritten(
        _exported(tmp_path), tmp_path / "evil.pt2", config_entry=None, extra={name: b"\x7fELF"}
    )
    with pytest.raises(ModelLoadError, match=rf"archive entry [^ ]*{name}"):
        load_model(str(archive))


def test_a_damaged_payload_config_is_one_clear_error(tmp_path: Path) -> None:
    source = _exported(tmp_path)
    target = tmp_path / "damaged.pt2"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = (
                b"\xff\xfe not json"
                if info.filename.endswith("_constants_config.json")
                else original.read(info)
            )
            copy.writestr(info, data)
    with pytest.raises(ModelLoadError, match=r"is not a JSON payload config"):
        load_model(str(target))


def test_a_plain_archive_still_loads(tmp_path: Path) -> None:
    loaded = load_model(str(_exported(tmp_path)))
    assert loaded.kind == "exported" and loaded.input_sizes == ((1, 3, 8, 8),)


def _replaced(source: Path, target: Path, suffix: str, payload: bytes) -> Path:
    """A copy of ``source`` whose entry ending in ``suffix`` holds ``payload`` instead."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        names = [info.filename for info in original.infolist() if info.filename.endswith(suffix)]
        assert names, f"no entry ends in {suffix}: {original.namelist()}"
        for info in original.infolist():
            copy.writestr(info, payload if info.filename in names else original.read(info))
    return target


def _pickled_marker(marker: Path) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"x": _Marker(marker)}, buffer)
    return buffer.getvalue()


def test_a_renamed_torch_save_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "model.pt2"
    torch.save({"model": _Marker(marker)}, path)  # a zip too, but a pickle inside
    with pytest.raises(ModelLoadError, match=r"model\.pt2"):
        load_model(str(path))
    assert not marker.exists()


def test_a_pickle_in_the_sample_inputs_does_not_run(tmp_path: Path) -> None:
    # torch reads them with torch.load; layerprof forces it weights-only, so the pickle fails to load.
    marker = tmp_path / "marker.txt"
    entry = "data/sample_inputs/model.pt"
    archive = _replaced(_exported(tmp_path), tmp_path / "evil.pt2", entry, _pickled_marker(marker))
    with pytest.raises(ModelLoadError, match=r"evil\.pt2"):
        load_model(str(archive))
    assert not marker.exists()


def test_a_pickled_weight_does_not_run(tmp_path: Path) -> None:
    # A weight whose payload config says use_pickle is read with torch.load: weights-only here.
    marker = tmp_path / "marker.txt"
    source, target = _exported(tmp_path), tmp_path / "evil.pt2"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("_weights_config.json"):
                document = json.loads(data)
                for payload in document["config"].values():
                    payload["use_pickle"] = True
                data = json.dumps(document).encode()
            elif "/data/weights/weight_" in info.filename:
                data = _pickled_marker(marker)
            copy.writestr(info, data)
    with pytest.raises(ModelLoadError, match=r"evil\.pt2"):
        load_model(str(target))
    assert not marker.exists()
