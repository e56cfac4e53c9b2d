"""layerprof.cli.loader: each MODEL form loads; each way to fail is one ModelLoadError naming MODEL."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import layerprof
from layerprof.cli.loader import DEFAULT_INPUT_SIZE, load_model, parse_model_args, torchvision_crop_size
from layerprof.errors import ModelLoadError

SOURCE = """
from torch import nn


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)

    def forward(self, x):
        return self.conv(x)


def build(width=4):
    return Net(width)


class Factories:
    @staticmethod
    def wide():
        return Net(16)


instance = Net(2)
number = 3


def broken():
    raise RuntimeError("weights missing\\nsecond line of the message")


def not_a_model():
    return [1, 2, 3]
"""


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "netfile.py"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def load_error(spec: str, args: dict[str, Any] | None = None) -> str:
    with pytest.raises(ModelLoadError) as caught:
        load_model(spec, args)
    message = str(caught.value)
    assert "\n" not in message, message
    assert len(message) < 500
    return message


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["num_classes=10"], {"num_classes": 10}),
        (["width=0.5", "act=relu"], {"width": 0.5, "act": "relu"}),
        (["flag=True", "none=None", "size=(3, 3)"], {"flag": True, "none": None, "size": (3, 3)}),
        (["name='quoted'", "text=a=b"], {"name": "quoted", "text": "a=b"}),
    ],
    ids=["int", "float-and-string", "literals", "quoted-and-equals"],
)
def test_parse_model_args(items: list[str], expected: dict[str, Any]) -> None:
    assert parse_model_args(items) == expected


@pytest.mark.parametrize("item", ["novalue", "=3", "2x=1"])
def test_parse_model_args_refuses(item: str) -> None:
    with pytest.raises(ModelLoadError, match="key=value"):
        parse_model_args([item])


def test_file_factory_with_args(model_file: Path) -> None:
    loaded = load_model(f"{model_file}:build", {"width": 6})
    assert loaded.kind == "file"
    assert loaded.input_sizes is None
    assert loaded.model.conv.out_channels == 6  # type: ignore[union-attr]


def test_file_class_instance_and_dotted_attribute(model_file: Path) -> None:
    assert load_model(f"{model_file}:Net").model.conv.out_channels == 4  # type: ignore[union-attr]
    assert load_model(f"{model_file}:instance").model.conv.out_channels == 2  # type: ignore[union-attr]
    assert load_model(f"{model_file}:Factories.wide").model.conv.out_channels == 16  # type: ignore[union-attr]
    assert "takes no --model-arg" in load_error(f"{model_file}:instance", {"width": 3})


def test_two_files_with_one_name_do_not_collide(tmp_path: Path) -> None:
    for folder, width in (("a", 3), ("b", 5)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "model.py").write_text(
            f"from torch import nn\ndef build():\n    return nn.Conv2d(3, {width}, 1)\n", encoding="utf-8"
        )
    first = load_model(f"{tmp_path / 'a' / 'model.py'}:build").model
    second = load_model(f"{tmp_path / 'b' / 'model.py'}:build").model
    assert (first.out_channels, second.out_channels) == (3, 5)  # type: ignore[union-attr]


def test_file_imports_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "blocks_for_loader_test.py").write_text("from torch import nn\nWIDTH = 7\n", encoding="utf-8")
    (tmp_path / "main_model.py").write_text(
        "from torch import nn\nimport blocks_for_loader_test as blocks\n"
        "def build():\n    return nn.Conv2d(3, blocks.WIDTH, 1)\n",
        encoding="utf-8",
    )
    assert load_model(f"{tmp_path / 'main_model.py'}:build").model.out_channels == 7  # type: ignore[union-attr]
    assert str(tmp_path) not in os.sys.path  # type: ignore[attr-defined]


def test_module_factory(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(model_file.parent))
    loaded = load_model("netfile:build", {"width": 5})
    assert loaded.kind == "module"
    assert loaded.model.conv.out_channels == 5  # type: ignore[union-attr]
    assert dict(loaded.model_args) == {"width": 5}


def test_torchvision() -> None:
    loaded = load_model("torchvision:resnet18", {"num_classes": 10})
    assert loaded.kind == "torchvision"
    assert loaded.input_sizes == ((1, 3, 224, 224),)
    assert loaded.model.fc.out_features == 10  # type: ignore[union-attr]
    # weights=None: the parameters are freshly initialised, nothing was downloaded or read
    assert all(p.requires_grad for p in loaded.model.parameters())


@pytest.mark.parametrize(
    ("name", "crop"), [("resnet18", 224), ("inception_v3", 299), ("efficientnet_b3", 300)]
)
def test_torchvision_crop_size_from_default_weights(name: str, crop: int) -> None:
    assert torchvision_crop_size(name) == crop


def test_torchvision_crop_size_unknown() -> None:
    assert torchvision_crop_size("no_such_model") is None
    assert DEFAULT_INPUT_SIZE == (1, 3, 224, 224)


def test_torchvision_errors() -> None:
    assert "closest: resnet18" in load_error("torchvision:resnet181")
    assert "never downloads weights" in load_error("torchvision:resnet18", {"weights": "DEFAULT"})
    assert "unexpected keyword" in load_error("torchvision:resnet18", {"no_such_arg": 1})


def test_exported_program(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    path = tmp_path / "cnn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 12, 12),)), path)
    loaded = load_model(str(path))
    assert loaded.kind == "exported"
    assert loaded.input_sizes == ((1, 3, 12, 12),)
    x = torch.randn(1, 3, 12, 12)
    torch.testing.assert_close(loaded.model(x), model(x))
    assert "takes no --model-arg" in load_error(str(path), {"width": 2})
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    # The exported module's private guard helper is not a layer: it does nothing and gets no row.
    report = layerprof.analyze(loaded.model, input_size=(1, 3, 12, 12))
    assert not [r.name for r in report.layers if "_guards_fn" in r.name]
    assert report.total.matrix_flops == 2 * 8 * 12 * 12 * 3 * 9  # the conv, all of the matrix work


def test_exported_program_is_read_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "any.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("any/archive_format", "pt2")
    seen: list[str | None] = []

    def fake_load(file: object) -> Any:
        seen.append(os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD"))
        raise RuntimeError("stop here")

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch.export, "load", fake_load)
    assert "torch.export.load failed: RuntimeError: stop here" in load_error(str(path))
    assert seen == ["1"]  # every torch.load inside ran weights-only
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # and the switch is put back
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_exported_program_errors(tmp_path: Path) -> None:
    assert "no such file" in load_error(str(tmp_path / "absent.pt2"))
    text = tmp_path / "text.pt2"
    text.write_text("hello")
    assert "not a zip file" in load_error(str(text))
    other_zip = tmp_path / "other.pt2"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "a zip, but no exported program")
    assert "torch.export.load failed" in load_error(str(other_zip))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("resnet50", "is not one of"),
        (":build", "is not one of"),
        ("package.module:", "is not one of"),
        ("", "MODEL must be one of"),
        ("no_such_pkg_for_layerprof:build", "no module named 'no_such_pkg_for_layerprof'"),
        ("model.pth", "does not unpickle"),
        ("model.pt", "does not unpickle"),
    ],
)
def test_spec_errors(spec: str, needle: str) -> None:
    assert needle in load_error(spec)


def test_module_whose_import_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "needs_missing_dep.py").write_text("import no_such_dependency_xyz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = load_error("needs_missing_dep:build")
    assert "importing needs_missing_dep failed: ModuleNotFoundError" in message


def test_file_errors(model_file: Path, tmp_path: Path) -> None:
    assert "no such file" in load_error(f"{tmp_path / 'absent.py'}:build")
    assert "has no attribute 'biuld'; closest: build" in load_error(f"{model_file}:biuld")
    assert "names a int, not a model factory" in load_error(f"{model_file}:number")
    assert "the factory raised RuntimeError: weights missing second line" in load_error(
        f"{model_file}:broken"
    )
    assert "returned a list, not a torch.nn.Module" in load_error(f"{model_file}:not_a_model")
    crashing = tmp_path / "crashing.py"
    crashing.write_text("raise ImportError('half-installed')\n", encoding="utf-8")
    assert "running" in load_error(f"{crashing}:build") and "ImportError: half-installed" in load_error(
        f"{crashing}:build"
    )


def test_torchvision_on_meta_counts_like_a_real_build() -> None:
    import layerprof

    meta = load_model("torchvision:resnet18", on_meta=True).model.eval()
    real = load_model("torchvision:resnet18").model.eval()
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    counted = [layerprof.analyze(m, input_size=(1, 3, 64, 64), target="t4") for m in (meta, real)]
    assert [(r.name, r.flops, r.bytes_total, r.params) for r in counted[0].layers] == [
        (r.name, r.flops, r.bytes_total, r.params) for r in counted[1].layers
    ]


def test_torchvision_on_meta_falls_back_to_the_cpu() -> None:
    # RegNet's builder computes its widths with tensors (.tolist()), which the meta device cannot give
    loaded = load_model("torchvision:regnet_x_400mf", on_meta=True)
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    with pytest.raises(ModelLoadError, match="unexpected keyword"):
        load_model("torchvision:resnet18", {"no_such_arg": 1}, on_meta=True)


def test_vit_input_size_is_the_size_it_was_built_for() -> None:
    # vit_h_14's DEFAULT weights crop to 518, but built without them it takes its builder's 224
    assert torchvision_crop_size("vit_h_14") == 518
    assert load_model("torchvision:vit_h_14", on_meta=True).input_sizes == ((1, 3, 224, 224),)
    built_for_384 = load_model("torchvision:vit_b_16", {"image_size": 384}, on_meta=True)
    assert built_for_384.input_sizes == ((1, 3, 384, 384),)
