"""Every example runs, as a user would run it, and prints what it promises (small sizes, CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    # torchrun prints a failed child's own traceback first and its summary last: keep both ends.
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[:4000] + result.stderr[-2000:]
    return result.stdout


def test_train_watch_prints_forward_and_backward_tables() -> None:
    out = run("examples/train_watch.py", "--steps", "6", "--every", "3", "--target", "t4", "--threads", "1")
    assert "bwd/fwd" in out and "backward" in out and "bound@t4" in out


def test_audit_deploy_checks_budgets_on_a_t4_and_an_orin() -> None:
    out = run("examples/audit_deploy.py", "--models", "mobilenet_v3_large")
    assert "t4" in out and "jetson-orin-nano-8gb" in out


def test_which_card_ranks_every_device() -> None:
    out = run("examples/which_card.py", "--model", "torchvision:resnet18")
    assert "h100-sxm" in out and "gtx1080" in out


@pytest.mark.timeout(240)
def test_ddp_watch_with_two_ranks_on_gloo() -> None:
    out = run(
        "-m", "torch.distributed.run", "--nproc_per_node=2", "examples/ddp_watch.py",
        "--steps", "4", "--every", "2", "--target", "t4", "--batch", "2", "--size", "32",
        timeout=200,
    )  # fmt: skip
    assert "(ddp)/allreduce" in out
    assert "max rank" in out
