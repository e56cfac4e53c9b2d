"""The pytest plugin, run inside pytest with pytester: the layerprof_audit fixture, its options, the
terminal summary of failing audits, the report folder, and a session that never uses it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

import layerprof
from layerprof.analysis.compare import load_report

pytest_plugins = ["pytester"]

SRC = str(Path(layerprof.__file__).resolve().parents[1])

BUDGET_TESTS = """
from torch import nn

from layerprof.analysis.budgets import assert_within


def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())


def test_fits(layerprof_audit):
    report = layerprof_audit(tiny(), input_size=(1, 3, 16, 16))
    assert [t.name for t in report.targets] == ["t4"]  # from --layerprof-target
    assert_within(report, max_gflops=1.0, max_latency_ms=10.0)


def test_too_big(layerprof_audit):
    report = layerprof_audit(tiny(), input_size=(1, 3, 16, 16), target="orin-nano", name="tiny-cnn")
    # 2 * 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16 = 112640 FLOPs > 1e-4 GFLOPs = 100000
    assert_within(report, max_gflops=1e-4)
"""


@pytest.fixture(scope="module", autouse=True)
def _torch_fully_imported() -> None:
    # pytester's in-process runs drop the modules they imported when they end, and torch's lazily
    # imported parts cannot be imported twice: one analyze and one table here import them for good.
    report = layerprof.analyze(torch.nn.Conv2d(3, 4, 1), input_size=(1, 3, 4, 4), target="t4")
    report.table()


@pytest.fixture(autouse=True)
def _only_the_plugin_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    # Load the plugin through -p only, whether or not layerprof is pip-installed here.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_passing_and_failing_budgets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_audited=BUDGET_TESTS)
    result = pytester.runpytest("-p", "layerprof.pytest_plugin", "--layerprof-target", "t4")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    # the failure names the budget and how far over it is: (112640 - 100000) / 100000 = 12.6%
    assert "FAIL max_gflops: 0.0001126 GFLOPs > limit 0.0001 GFLOPs, over by 12.6% (counted)" in output
    summary = output.split("layerprof audits of failing tests", 1)[1]
    assert "test_audited.py::test_too_big (FAILED): tiny-cnn" in summary
    assert "bound@jetson-orin-nano-8gb" in summary
    assert "test_fits" not in summary  # passing tests' audits are not printed without -v


def test_verbose_prints_every_audit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_audited=BUDGET_TESTS)
    result = pytester.runpytest("-p", "layerprof.pytest_plugin", "--layerprof-target", "t4", "-v")
    result.assert_outcomes(passed=1, failed=1)
    summary = result.stdout.str().split("= layerprof audits =", 1)[1]
    assert "test_audited.py::test_fits (passed): Sequential" in summary
    assert "test_audited.py::test_too_big (FAILED): tiny-cnn" in summary
    assert "bound@t4" in summary


def test_passing_run_prints_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ok="""
        from torch import nn

        def test_small(layerprof_audit):
            report = layerprof_audit(nn.Conv2d(3, 4, 1), input_size=(1, 3, 8, 8), target="t4")
            assert report.total.flops == 2 * 4 * 8 * 8 * 3 + 4 * 8 * 8
        """
    )
    result = pytester.runpytest("-p", "layerprof.pytest_plugin")
    result.assert_outcomes(passed=1)
    assert "layerprof audits" not in result.stdout.str()


def test_report_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_audited=BUDGET_TESTS)
    folder = pytester.path / "audits"
    result = pytester.runpytest(
        "-p", "layerprof.pytest_plugin", "--layerprof-target=t4", f"--layerprof-report={folder}"
    )
    result.assert_outcomes(passed=1, failed=1)

    def stem(nodeid: str) -> str:  # readable, plus a hash of the id so that ids never collide
        return nodeid.replace("::", "_") + "-" + hashlib.sha1(nodeid.encode()).hexdigest()[:8]

    fits, too_big = stem("test_audited.py::test_fits"), stem("test_audited.py::test_too_big")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{fits}.json", f"{fits}.txt", f"{too_big}.json", f"{too_big}.txt"]
    report = load_report(folder / f"{too_big}.json")
    assert report["total"]["flops"] == 2 * 8 * 16 * 16 * 3 * 9 + 8 * 16 * 16  # 112640
    text = (folder / f"{too_big}.txt").read_text()
    assert text.startswith("test_audited.py::test_too_big: tiny-cnn\nlayerprof: Sequential (1x3x16x16)")
    assert f"2 audit report(s) written to {folder}" in result.stdout.str()


def test_ini_target_and_several_audits_in_one_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nlayerprof_target = gtx1080\n")
    pytester.makepyfile(
        test_two="""
        from torch import nn

        def test_two_models(layerprof_audit):
            first = layerprof_audit(nn.Conv2d(3, 4, 1), input_size=(1, 3, 8, 8))
            second = layerprof_audit(nn.Conv2d(3, 4, 3), input_size=(1, 3, 8, 8), target=["t4", "a100"])
            assert [t.name for t in first.targets] == ["gtx1080"]
            assert [t.name for t in second.targets] == ["t4", "a100-40gb"]
            assert False, "show me the audits"
        """
    )
    result = pytester.runpytest("-p", "layerprof.pytest_plugin")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "test_two.py::test_two_models (FAILED): Conv2d\n" in output
    assert "test_two.py::test_two_models (FAILED): Conv2d #2" in output


def test_a_session_without_audits_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "layerprof.pytest_plugin")
    result.assert_outcomes(passed=1)
    # Nothing but pytest's own header line listing the installed plugins names layerprof.
    lines = [line for line in result.outlines if not line.startswith("plugins:")]
    assert not [line for line in lines if "layerprof" in line]
    assert result.ret == 0


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "layerprof.pytest_plugin", "--help")
    output = result.stdout.str()
    assert "--layerprof-target=NAME" in output and "--layerprof-report=DIR" in output


def test_entry_point_loads_the_plugin(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `pip install layerprof` does for pytest: a distribution with a pytest11 entry point.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    site = pytester.path / "site"
    dist = site / "layerprof_entrypoint_check-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: layerprof-entrypoint-check\nVersion: 0.0\n")
    # The entry point is named after the module, as in pyproject.toml, so that `-p` with the module
    # name is the same plugin rather than a second registration of it.
    (dist / "entry_points.txt").write_text("[pytest11]\nlayerprof.pytest_plugin = layerprof.pytest_plugin\n")
    path = os.pathsep.join([str(site), SRC, os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    pytester.makepyfile(
        test_uses="""
        import sys
        from torch import nn

        def test_fixture_is_there(layerprof_audit):
            assert layerprof_audit(nn.Conv2d(3, 4, 1), input_size=(1, 3, 4, 4)).total.flops > 0

        def test_plugin_module_binds_no_torch():
            # the plugin module imports torch only inside the fixture, when a test calls it
            import layerprof.pytest_plugin as plugin
            assert "torch" not in plugin.__dict__ and "nn" not in plugin.__dict__
        """
    )
    pytester.makepyfile(test_needs="def test_needs(layerprof_audit):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_uses.py")
    result.assert_outcomes(passed=2)
    named = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "layerprof.pytest_plugin", "test_uses.py"
    )
    named.assert_outcomes(passed=2)
    disabled = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:layerprof.pytest_plugin", "test_needs.py"
    )
    disabled.assert_outcomes(errors=1)
    assert "fixture 'layerprof_audit' not found" in disabled.stdout.str()


def test_report_files_of_ids_that_read_alike_do_not_overwrite_each_other(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_ids="""
        import pytest
        from torch import nn

        @pytest.mark.parametrize("w", ["a b", "a:b"])
        def test_m(layerprof_audit, w):
            layerprof_audit(nn.Conv2d(3, 4, 1), input_size=(1, 3, 4, 4))
        """
    )
    folder = pytester.path / "audits"
    result = pytester.runpytest(
        "-p", "layerprof.pytest_plugin", "--layerprof-target=t4", f"--layerprof-report={folder}"
    )
    result.assert_outcomes(passed=2)
    assert len([p for p in folder.iterdir() if p.suffix == ".json"]) == 2
