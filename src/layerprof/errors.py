"""Exceptions. Each subclasses a builtin so callers can catch the usual type too."""

from __future__ import annotations


class LayerprofError(Exception):
    """Base class of every error layerprof raises on purpose."""


class InvalidArgumentError(LayerprofError, ValueError):
    """An argument has a value layerprof cannot use; the message names it."""


class InvalidModelError(LayerprofError, TypeError):
    """The object given as a model is not a ``torch.nn.Module``."""


class DeviceMismatchError(LayerprofError, ValueError):
    """The inputs live on another torch device than the model."""


class UnknownDeviceError(LayerprofError, KeyError):
    """A target device name is not in the device table; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class InvalidDeviceSpecError(LayerprofError, ValueError):
    """A DeviceSpec (or a device file) carries a zero, negative or missing figure."""


class ForwardError(LayerprofError, RuntimeError):
    """The model's forward raised; the message names the layer that was running."""

    def __init__(self, message: str, layer: str) -> None:
        super().__init__(message)
        self.layer = layer


class FormulaError(LayerprofError, RuntimeError):
    """layerprof's own counting failed on one aten op: a bug in a formula or in the counter, not in the
    model, so it is not reported as the user's layer failing. ``op`` and ``formula`` name the two."""

    def __init__(self, message: str, op: str, formula: str) -> None:
        super().__init__(message)
        self.op = op
        self.formula = formula


class ModelLoadError(LayerprofError, RuntimeError):
    """A model named on the command line could not be loaded."""
