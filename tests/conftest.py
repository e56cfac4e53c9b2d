"""Helpers shared by the test modules: hooks left on a model, and torch's global switches.

Import them as ``from conftest import ...`` (pytest puts this directory on ``sys.path``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals

# -- hooks ---------------------------------------------------------------------------------------------

# Every hook dictionary an nn.Module carries: the hooks themselves, then the dictionaries that only flag
# some of them (with_kwargs=True, always_call=True), which hold the same ids as _forward_hooks or
# _forward_pre_hooks.
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)
HOOK_FLAG_DICTS = (
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)

# Hooks registered for every module at once (torch.nn.modules.module.register_module_*_hook).
GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)
GLOBAL_HOOK_FLAG_DICTS = ("_global_forward_hooks_with_kwargs", "_global_forward_hooks_always_called")


def hook_counts(model: nn.Module) -> dict[str, int]:
    """The non-empty hook dictionaries of ``model``, its submodules and torch's global module hooks.

    Keys are ``"<module name>.<dict>"`` (``"(root)"`` for the model itself, ``"(global)"`` for
    torch's module-wide hooks); ``{}`` means nothing is left anywhere.
    """
    counts = {
        f"{name or '(root)'}.{hooks}": len(getattr(module, hooks))
        for name, module in model.named_modules()
        for hooks in (*HOOK_DICTS, *HOOK_FLAG_DICTS)
        if len(getattr(module, hooks, {}))
    }
    for hooks in (*GLOBAL_HOOK_DICTS, *GLOBAL_HOOK_FLAG_DICTS):
        if len(getattr(module_globals, hooks, {})):
            counts[f"(global).{hooks}"] = len(getattr(module_globals, hooks))
    return counts


def hooks_on(model: nn.Module) -> int:
    """How many hooks are registered on ``model``, its submodules and torch's module-wide hooks.

    Each hook counts once, whatever flags it was registered with (the flag dictionaries are left out).
    """
    flags = {f".{hooks}" for hooks in (*HOOK_FLAG_DICTS, *GLOBAL_HOOK_FLAG_DICTS)}
    return sum(n for key, n in hook_counts(model).items() if key[key.rindex(".") :] not in flags)


def assert_no_hooks(model: nn.Module) -> None:
    """Not one hook left on ``model``, its submodules, or torch's global module hooks."""
    assert hook_counts(model) == {}


# -- torch's global switches ---------------------------------------------------------------------------


def torch_flags() -> dict[str, Any]:
    """torch's process-wide switches that profiling code might flip, by name."""
    flags: dict[str, Any] = {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cuda.matmul.allow_fp16_reduced_precision_reduction": (
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
        ),
        "cuda.matmul.allow_bf16_reduced_precision_reduction": (
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
        ),
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "cudnn.enabled": torch.backends.cudnn.enabled,
        "mkldnn.enabled": torch.backends.mkldnn.enabled,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_algorithms_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "grad_enabled": torch.is_grad_enabled(),
        "inference_mode": torch.is_inference_mode_enabled(),
        "default_dtype": torch.get_default_dtype(),
        "num_threads": torch.get_num_threads(),
    }
    return flags


def set_torch_flags(flags: dict[str, Any]) -> None:
    """Set the switches :func:`torch_flags` returned (the precision first: it also sets cuBLAS's TF32)."""
    torch.set_float32_matmul_precision(flags["float32_matmul_precision"])
    torch.backends.cuda.matmul.allow_tf32 = flags["cuda.matmul.allow_tf32"]
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = flags[
        "cuda.matmul.allow_fp16_reduced_precision_reduction"
    ]
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = flags[
        "cuda.matmul.allow_bf16_reduced_precision_reduction"
    ]
    torch.backends.cudnn.allow_tf32 = flags["cudnn.allow_tf32"]
    torch.backends.cudnn.benchmark = flags["cudnn.benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn.deterministic"]
    torch.backends.cudnn.enabled = flags["cudnn.enabled"]
    torch.backends.mkldnn.enabled = flags["mkldnn.enabled"]
    torch.use_deterministic_algorithms(
        flags["deterministic_algorithms"], warn_only=flags["deterministic_algorithms_warn_only"]
    )
    torch.set_grad_enabled(flags["grad_enabled"])
    torch.set_default_dtype(flags["default_dtype"])
    torch.set_num_threads(flags["num_threads"])
    # inference mode is a context, not a switch: nothing to set back outside one.


@contextmanager
def restored_torch_flags() -> Iterator[dict[str, Any]]:
    """Run a block that flips torch's switches, and put every one back after it, raise or not.

    torch's backend flags answer through module ``__getattr__``, which ``monkeypatch`` cannot undo.
    """
    saved = torch_flags()
    try:
        yield saved
    finally:
        set_torch_flags(saved)


@pytest.fixture
def torch_flags_restored() -> Iterator[dict[str, Any]]:
    """The test may flip any of torch's switches; they are all put back after it. Yields the saved ones."""
    with restored_torch_flags() as saved:
        yield saved


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test: two threads on a machine shared with other runs wait on each
    other, which makes measured times (and coverage) swing; one thread does not."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def import_or_skip_outside_ci(name: str) -> Any:
    """The module ``name``. Outside CI a missing package skips the test; in CI (``CI=true``, where the
    test extra installs it) its absence is a failure, never a silent skip."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name)
