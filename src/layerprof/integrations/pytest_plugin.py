"""pytest plugin: budget assertions on models inside a project's own test suite.

Installed with layerprof (entry point ``pytest11``), so every pytest run loads it; this module
therefore imports nothing heavy at import time (torch comes in only when a test calls the fixture)
and does nothing in a session that does not use it. The entry point is named after the module, so
``pytest -p layerprof.pytest_plugin`` (without the entry point) and the auto-loaded plugin are one;
switch it off with ``pytest -p no:layerprof.pytest_plugin``.

::

    from layerprof.budgets import assert_within

    def test_fits_the_orin(layerprof_audit):
        report = layerprof_audit(build_model(), input_size=(1, 3, 224, 224), target="jetson-orin-nano-8gb")
        assert_within(report, max_gflops=5.0, max_latency_ms=8.0)

Options: ``--layerprof-target NAME`` (the fixture's default target; ini ``layerprof_target``) and
``--layerprof-report DIR`` (each audited report written there as JSON and as table text). The tables
of the audits made by failing tests are printed in the terminal summary; with ``-v`` those of every
audit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch
    from torch import nn

    from layerprof.hardware.specs import DeviceSpec
    from layerprof.report.facade import Report

__all__ = ["AuditLog", "LayerprofAudit"]

LayerprofAudit = Callable[..., "Report"]


@dataclass(slots=True)
class _Audit:
    nodeid: str
    label: str
    report: Report


@dataclass(slots=True)
class AuditLog:
    """The audits of one pytest session, and which tests failed. Lives in ``config.stash``."""

    report_dir: Path | None
    audits: list[_Audit] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)

    def add(self, nodeid: str, report: Report, name: str | None) -> _Audit:
        count = sum(1 for a in self.audits if a.nodeid == nodeid)
        label = name or (report.model_name if count == 0 else f"{report.model_name} #{count + 1}")
        audit = _Audit(nodeid, label, report)
        self.audits.append(audit)
        if self.report_dir is not None:
            _write_files(self.report_dir, audit, count)
        return audit


_LOG_KEY = pytest.StashKey[AuditLog]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("layerprof", "layerprof model audits")
    group.addoption(
        "--layerprof-target",
        action="store",
        default=None,
        metavar="NAME",
        help="default target device of the layerprof_audit fixture (e.g. t4, jetson-orin-nano-8gb)",
    )
    group.addoption(
        "--layerprof-report",
        action="store",
        default=None,
        metavar="DIR",
        help="write every layerprof_audit report to DIR as JSON and as a table",
    )
    parser.addini("layerprof_target", "default target device of the layerprof_audit fixture", default="")


def pytest_configure(config: pytest.Config) -> None:
    folder = config.getoption("layerprof_report")
    log = AuditLog(Path(folder) if folder else None)
    config.stash[_LOG_KEY] = log
    config.pluginmanager.register(_Summary(log), "layerprof-summary")


def _log(config: pytest.Config) -> AuditLog:
    return config.stash[_LOG_KEY]


def _safe(text: str) -> str:
    """A file name for a test id: readable, and unique (ids that read alike differ in the hash)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "audit"
    return f"{readable}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def _write_files(folder: Path, audit: _Audit, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = _safe(audit.nodeid) + (f"-{count + 1}" if count else "")
    audit.report.to_json(folder / f"{stem}.json")
    header = f"{audit.nodeid}: {audit.label}\n"
    (folder / f"{stem}.txt").write_text(header + audit.report.table() + "\n", encoding="utf-8")


@pytest.fixture
def layerprof_audit(request: pytest.FixtureRequest) -> LayerprofAudit:
    """``layerprof_audit(model, input_size=..., target=..., dtype=..., name=...)`` -> Report.

    Counts the model with :func:`layerprof.analyze` (``inputs`` instead of ``input_size`` runs it on
    real tensors), judged on ``target`` (default ``--layerprof-target``), and records the report for
    the terminal summary and ``--layerprof-report``. The model is counted in the mode it is in and
    never changed: pass ``model.eval()`` to audit inference (no dropout, batch norm on running stats).
    """
    config = request.config
    default = config.getoption("layerprof_target") or str(config.getini("layerprof_target") or "") or None

    def audit(
        model: nn.Module,
        inputs: Any = None,
        *,
        input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
        dtype: torch.dtype | str | None = None,
        target: str | DeviceSpec | Sequence[str | DeviceSpec] | None = None,
        name: str | None = None,
    ) -> Report:
        from layerprof.api.analyzing import analyze

        chosen = target if target is not None else default
        report = analyze(model, inputs, input_size=input_size, dtype=dtype, target=chosen)
        _log(config).add(request.node.nodeid, report, name)
        return report

    return audit


class _Summary:
    """The session's reporter, registered in :func:`pytest_configure`: notes failed tests, prints the
    audited tables at the end."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.log.failed.add(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        log = self.log
        if not log.audits:
            return
        verbose = int(config.getoption("verbose") or 0) > 0
        shown = [a for a in log.audits if verbose or a.nodeid in log.failed]
        if shown:
            title = "layerprof audits" if verbose else "layerprof audits of failing tests"
            terminalreporter.write_sep("=", title)
            for audit in shown:
                status = "FAILED" if audit.nodeid in log.failed else "passed"
                terminalreporter.write_line(f"{audit.nodeid} ({status}): {audit.label}")
                terminalreporter.write_line(audit.report.table())
                terminalreporter.write_line("")
        if log.report_dir is not None:
            terminalreporter.write_line(
                f"layerprof: {len(log.audits)} audit report(s) written to {log.report_dir}"
            )
