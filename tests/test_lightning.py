"""LayerProfCallback in a real (tiny, CPU) Lightning run; and a clear error where Lightning is missing."""

from __future__ import annotations

import importlib
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_no_hooks, import_or_skip_outside_ci

_real_connect = socket.socket.connect


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lightning runs offline here: any attempt to reach another machine fails the test."""

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"a Lightning test tried to connect to {address!r}")
        _real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield


def test_import_without_lightning_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        n for n in sys.modules if n == "lightning" or n.startswith(("lightning.", "layerprof.integrations."))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lightning", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match="pip install lightning"):
        importlib.import_module("layerprof.integrations.lightning")


def lightning_classes() -> tuple[Any, type, type]:
    """Lightning, a tiny LightningModule and a logger that keeps what it is given (skips without it)."""
    lightning = import_or_skip_outside_ci("lightning")
    from lightning.pytorch.loggers import Logger

    class TinyModule(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.fc = nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.relu(self.conv(x)).mean(dim=(2, 3)))  # type: ignore[no-any-return]

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class MemoryLogger(Logger):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.logged: list[tuple[dict[str, float], int | None]] = []

        @property
        def name(self) -> str:
            return "memory"

        @property
        def version(self) -> str:
            return "0"

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.logged.append((dict(metrics), step))

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return lightning, TinyModule, MemoryLogger


def fit(tmp_path: Path, callbacks: list[Any], logger: Any = False, max_steps: int = 7) -> nn.Module:
    """A seeded run of TinyModule on random data (the same batches in the same order every time)."""
    lightning, TinyModule, _ = lightning_classes()
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 5, (32,)))
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)
    module = TinyModule()
    trainer = lightning.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")  # num_workers=0 on purpose
        trainer.fit(module, loader)
    assert trainer.global_step == max_steps
    return module  # type: ignore[no-any-return]


def test_callback_logs_per_layer_metrics_and_removes_its_hooks(tmp_path: Path) -> None:
    _, _, MemoryLogger = lightning_classes()
    from layerprof.integrations.lightning import LayerProfCallback

    logger = MemoryLogger()
    callback = LayerProfCallback(every_n_steps=3, target="t4")
    module = fit(tmp_path, [callback], logger)

    sampled = [
        (metrics, step) for metrics, step in logger.logged if any(k.startswith("layerprof/") for k in metrics)
    ]
    assert len(sampled) == 2  # batches 0/1 and 3/4 (7 steps; 6 is counted, never timed)
    metrics, step = sampled[0]
    assert step == 1  # the 2nd batch's backward ends the sample: 1 optimizer step is done
    assert metrics["layerprof/conv/time_ms"] > 0
    assert metrics["layerprof/conv/backward_time_ms"] > 0
    # fc, Linear(4, 5) on 4 samples: 2 * 4 * 4 * 5 + 4 * 5 = 180 FLOPs over (16 + 20 + 5 + 20) * 4 = 244
    # bytes, 0.74 FLOP/B, far under the T4's ridge (8.1e12 / 320e9 = 25 FLOP/B): memory-bound.
    assert metrics["layerprof/fc/compute_bound"] == 0.0
    assert metrics["layerprof/total/time_ms"] > 0
    report = callback.last_report
    assert report is not None
    assert [r.name for r in report.forward] == ["conv", "relu", "(root)/mean", "fc"]
    assert {"conv", "fc"} <= {r.name for r in report.backward}
    assert report.row("conv").flops == 2 * 4 * 4 * 8 * 8 * 3 * 9 + 4 * 4 * 8 * 8  # conv MACs x 2 + bias
    assert report.row("conv", "backward").time_ms is not None
    assert callback.watcher is None
    assert_no_hooks(module)


def test_a_watched_run_trains_exactly_like_an_unwatched_one(tmp_path: Path) -> None:
    _, _, MemoryLogger = lightning_classes()
    from layerprof.integrations.lightning import LayerProfCallback

    plain = fit(tmp_path / "plain", [])
    callback = LayerProfCallback(every_n_steps=2, target="t4", log_table=False)
    watched = fit(tmp_path / "watched", [callback], MemoryLogger())
    assert callback.last_report is not None  # it did sample (steps 0/1, 2/3 and 4/5; 6 counted)
    for (name, before), after in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(before, after), name  # bit for bit, after 7 SGD steps


def test_every_n_steps_is_checked() -> None:
    lightning_classes()
    from layerprof.errors import InvalidArgumentError
    from layerprof.integrations.lightning import LayerProfCallback

    with pytest.raises(InvalidArgumentError, match="every_n_steps"):
        LayerProfCallback(every_n_steps=0)
