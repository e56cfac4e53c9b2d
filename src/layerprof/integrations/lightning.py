"""Lightning: ``LayerProfCallback`` samples a training step every N steps with :func:`layerprof.watch`.

::

    from layerprof.integrations.lightning import LayerProfCallback

    trainer = lightning.Trainer(callbacks=[LayerProfCallback(every_n_steps=200, target="a100")])

The watcher goes on in ``on_train_start`` and comes off in ``on_train_end`` (and on an exception).
Each sample's table goes through ``rank_zero_info``; where the trainer has a logger, per-row figures
go to ``trainer.logger.log_metrics`` at ``trainer.global_step``: ``layerprof/<row>/time_ms`` (forward),
``layerprof/<row>/backward_time_ms``, ``layerprof/<row>/compute_bound`` (1.0 compute-bound, 0.0
memory-bound on the first target) and ``layerprof/total/time_ms``.

Steps are forwards of the watched module: the LightningModule itself unless ``module`` names one of
its submodules (``module="model"`` when ``training_step`` calls ``self.model(x)`` and not ``self(x)``).
Validation forwards of that module count too; they are never timed as a training step (see
:mod:`layerprof.api.watch`). This module needs ``lightning`` (``pip install lightning``).
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import LightningModule, Trainer
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.utilities import rank_zero_info
except ImportError as error:  # pragma: no cover - exercised by hiding lightning in a test
    raise ImportError(
        "layerprof.integrations.lightning needs Lightning, which is not installed: pip install lightning"
    ) from error

from layerprof.api.watch import watch
from layerprof.api.watcher import Watcher
from layerprof.core.validate import positive_int
from layerprof.hardware.targets import TargetArg
from layerprof.report.facade import Report

__all__ = ["LayerProfCallback", "report_metrics"]


def report_metrics(report: Report) -> dict[str, float]:
    """The figures of a sampled report as flat ``layerprof/<row>/<what>`` metrics (see module docs)."""
    metrics: dict[str, float] = {}
    for row in report.layers:
        if row.phase == "backward":
            if row.time_ms is not None:
                metrics[f"layerprof/{row.name}/backward_time_ms"] = float(row.time_ms)
            continue
        if row.time_ms is not None:
            metrics[f"layerprof/{row.name}/time_ms"] = float(row.time_ms)
        if row.bound is not None:
            metrics[f"layerprof/{row.name}/compute_bound"] = 1.0 if row.bound == "compute" else 0.0
    if report.total.time_ms is not None:
        metrics["layerprof/total/time_ms"] = float(report.total.time_ms)
    return metrics


class LayerProfCallback(Callback):  # type: ignore[misc]  # Lightning ships without full type hints
    """Per-layer tables of a Lightning training run, forward and backward, every ``every_n_steps``.

    ``target`` is what the rows are judged against (a device name, a DeviceSpec, ``"auto"`` or a list);
    ``backward=False`` samples forwards only; ``module`` names the submodule to watch (default: the
    LightningModule); ``log_table=False`` keeps the tables out of the console.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        target: TargetArg = "auto",
        *,
        backward: bool = True,
        module: str | None = None,
        log_table: bool = True,
    ) -> None:
        super().__init__()
        self.every_n_steps = positive_int("every_n_steps", every_n_steps)
        self.target = target
        self.backward = backward
        self.module = module
        self.log_table = log_table
        self.watcher: Watcher | None = None
        self.last_report: Report | None = None
        self._trainer: Trainer | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove()
        watched = pl_module if self.module is None else pl_module.get_submodule(self.module)
        self._trainer = trainer
        self.watcher = watch(
            watched, every=self.every_n_steps, target=self.target, backward=self.backward, sink=self._emit
        )

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.watcher is not None:
            self.watcher.flush()  # the training thread: emit now what a device thread left

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.watcher is not None:
            self.watcher.flush()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove()

    def _remove(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.remove()
        self._trainer = None

    def _emit(self, report: Report) -> None:
        self.last_report = report
        trainer = self._trainer
        if self.log_table:
            step = f" at step {trainer.global_step}" if trainer is not None else ""
            rank_zero_info(f"layerprof{step}:\n{report.table()}")
        if trainer is not None and trainer.logger is not None:
            trainer.logger.log_metrics(report_metrics(report), step=trainer.global_step)
