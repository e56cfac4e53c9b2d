"""Golden files for every printed table: analyze, profile, watch, gathered ranks, compare, scale, devices.

One file per table under ``tests/golden/``. After an intended change of a table, regenerate them with
``LAYERPROF_REGEN_GOLDEN=1 pytest tests/test_golden_tables.py`` (the convention of
``tests/test_table_export.py``) and read the diff before committing it.

Measured times vary from run to run, so the profile and watch tables go through :func:`mask_times`:
in every column whose header is a measured time (``time ms``, ``IQR ms``, ...; roofline columns are
deterministic and kept) each number becomes ``#`` and the unit in the header ``*s``; the column is
then re-padded to its masked width, every other column left exactly as printed; the coverage footer's
numbers become ``#`` too. What remains (headers, rows, counts, shapes, marks such as ``^`` and ``-``,
roofline figures, footers) is compared character for character. The gathered table is built from
hand-set per-rank times, as ``tests/test_distributed.py`` does, so nothing in it is masked.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from layerprof import LayerRow
from layerprof.cli import main
from layerprof.core import rownames
from layerprof.distributed.allreduce import ALLREDUCE_ROW, ring_allreduce_bytes
from layerprof.distributed.merge import RankSample, merge_ranks, with_allreduce
from layerprof.report.facade import AllreduceTime, Report

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("LAYERPROF_REGEN_GOLDEN") == "1"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with LAYERPROF_REGEN_GOLDEN=1 to write it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "\n".join(
            difflib.unified_diff(
                expected.splitlines(), text.splitlines(), f"golden/{name}", "printed", lineterm=""
            )
        )
        pytest.fail(
            f"the table differs from tests/golden/{name} (LAYERPROF_REGEN_GOLDEN=1 rewrites it):\n{diff}"
        )


# -- masking measured times ----------------------------------------------------------------------------

_RULE = re.compile(r"^-+(  -+)*$")  # tabulate's "simple" rule under the headers
_MEASURED = re.compile(r"^(?!roof)\S+ (ms|us)$")  # time ms, IQR ms, median ms, max ms; not roof us@t4
_NUMBER = re.compile(r"\d[\d.,]*(?:e[+-]?\d+)?")


def _spans(rule: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]


def _is_row(line: str, spans: list[tuple[int, int]]) -> bool:
    """A table row has two spaces before every column that it reaches (a footer line does not)."""
    return bool(line) and all(line[start - 2 : start] == "  " for start, _ in spans[1:] if start < len(line))


def _mask_block(lines: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """Header, rule and rows of one table with the measured-time columns masked and re-padded."""
    cells = [[line[start:end] for start, end in spans] for line in lines]
    for column in range(len(spans)):
        if not _MEASURED.match(cells[0][column].strip()):
            continue
        masked = [_NUMBER.sub("#", row[column].strip()) for row in cells]
        masked[0] = re.sub(r" (ms|us)$", " *s", cells[0][column].strip())
        width = max(len(m) for i, m in enumerate(masked) if i != 1)
        masked[1] = "-" * width
        for row, text in zip(cells, masked, strict=True):
            right = row[column].strip() and row[column].startswith(" ") and not row[column].endswith(" ")
            row[column] = text.rjust(width) if right else text.ljust(width)
    return ["  ".join(row).rstrip() for row in cells]


def mask_times(text: str) -> str:
    """``text`` with every measured time (table columns and the coverage footer) masked; see the docstring."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            spans = _spans(lines[i + 1])
            end = i + 2
            while end < len(lines) and _is_row(lines[end], spans):
                end += 1
            out += _mask_block(lines[i:end], spans)
            i = end
            continue
        line = lines[i]
        if line.startswith("coverage:"):
            line = _NUMBER.sub("#", line)
        out.append(line)
        i += 1
    return "\n".join(out)


def test_mask_times_masks_only_measured_columns() -> None:
    table = (
        "layer    time ms    IQR ms    roof us@t4\n"
        "-------  ---------  --------  ------------\n"
        "conv     31.59      1.98      0.013\n"
        "block/add  0.063^   -         0.001\n"
        "total    47.86      -         0.045\n"
        "coverage: rows sum to 99% of the end-to-end 47.86 ms forward"
    )
    # A misaligned row ("block/add" runs into the next column) is not a row: masking stops there.
    assert mask_times(table).splitlines() == [
        "layer    time *s  IQR *s  roof us@t4",
        "-------  -------  ------  ------------",
        "conv     #        #       0.013",
        "block/add  0.063^   -         0.001",
        "total    47.86      -         0.045",
        "coverage: rows sum to #% of the end-to-end # ms forward",
    ]
    aligned = table.replace("block/add  0.063^   -  ", "glue     0.063^     -  ")
    assert mask_times(aligned).splitlines()[3] == "glue     #^       -       0.001"


# -- the models ------------------------------------------------------------------------------------------


class Block(nn.Module):
    """conv -> batch norm -> relu, plus its input: the add is the glue row ``block/add``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x))) + x  # type: ignore[no-any-return]


class Small(nn.Module):
    """A strided stem, a residual block, a strided conv, one ReLU reused on two shapes, pool and head.

    Rows: a ``calls`` column (``act`` runs twice) with ``varies`` (8x16x16, then 16x8x8), a glue row
    (``block/add``), kernel sizes, shapes and a 10-way linear head.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.block = Block(8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.act(self.stem(x)))
        x = self.act(self.down(x))
        return self.fc(torch.flatten(self.pool(x), 1))  # type: ignore[no-any-return]


SIZE = (2, 3, 32, 32)


def small() -> Small:
    torch.manual_seed(0)
    return Small()


@pytest.fixture(scope="module")
def watched() -> Report:
    """The first report ``watch()`` delivers to a list sink: a sampled training step of Small."""
    model = small().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    reports: list[Report] = []
    with layerprof.watch(model, every=2, target="t4", sink=reports.append):
        for _ in range(4):
            x = torch.randn(SIZE, generator=generator)
            y = torch.randint(0, 10, (SIZE[0],), generator=generator)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    assert reports, "watch delivered no report"
    return reports[0]


# -- analyze ---------------------------------------------------------------------------------------------


def test_analyze_small_model_golden() -> None:
    report = layerprof.analyze(small().eval(), input_size=SIZE, target=["t4", "jetson-orin-nano-8gb"])
    check_golden("analyze_small.txt", report.table() + "\n")


def test_analyze_torchvision_resnet18_depth_1_golden() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    report = layerprof.analyze(model, input_size=(1, 3, 224, 224), target="t4")
    check_golden("analyze_resnet18_depth1.txt", report.table(depth=1) + "\n")


# -- profile and watch (times masked) --------------------------------------------------------------------


def test_profile_golden_with_times_masked() -> None:
    inputs = torch.randn(SIZE, generator=torch.Generator().manual_seed(0))
    report = layerprof.profile(small().eval(), inputs, target="t4", warmup=1, repeat=3)
    text = mask_times(report.table())
    assert "time *s" in text and "#" in text  # the time columns were found and masked
    check_golden("profile_small.txt", text + "\n")


def test_watch_forward_and_backward_golden_with_times_masked(watched: Report) -> None:
    assert watched.backward, "the sampled step has no backward rows"
    text = mask_times(watched.table())
    assert "time *s" in text and "bwd/fwd" in text
    check_golden("watch_small.txt", text + "\n")


# -- gathered ranks (hand-set times: nothing masked) ----------------------------------------------------

# Per rank, a factor on rank 0's time for every row: rank 1 is slow in its convolutions' backward, rank 2
# a little slow everywhere.
RANK_FACTORS = (1.0, 1.0, 1.125)


def _rank_ms(index: int, row_name: str, phase: str, rank: int) -> float:
    ms = 0.25 * (index + 1)  # 0.25, 0.5, ... ms down the rows: exact in binary
    if rank == 1 and phase == "backward" and row_name in ("stem", "down", "block.conv"):
        ms *= 2.0
    return ms * RANK_FACTORS[rank]


ALLREDUCE_MS = (1.5, 1.5, 2.0)  # rank 2's all-reduce waits for it: a straggler


def rank_report(base: Report, rank: int) -> Report:
    """``rank``'s own report of the sampled step: hand-set times, then its all-reduce row added, as the
    gather helper does on every rank before it sends its sample."""
    rows = tuple(
        replace(r, time_ms=_rank_ms(i, r.name, r.phase, rank), time_iqr_ms=None)
        for i, r in enumerate(base.layers)
    )
    total = replace(base.total, time_ms=sum(r.time_ms or 0.0 for r in rows) + 0.5)
    payload = 4 * base.total.params  # fp32 gradients, in 2 buckets
    sent, received = ring_allreduce_bytes(payload, len(RANK_FACTORS))
    row = LayerRow(  # as the communication hook's recorder builds it
        name=ALLREDUCE_ROW,
        kind="allreduce",
        phase="backward",
        depth=rownames.depth(ALLREDUCE_ROW),
        calls=2,
        dtype="float32",
        bytes_read=sent,
        bytes_written=received,
        time_ms=ALLREDUCE_MS[rank],
        time_iqr_ms=None,
    )
    times = AllreduceTime(buckets=2, payload_bytes=payload, time_ms=ALLREDUCE_MS[rank], hidden_ms=1.0)
    return with_allreduce(replace(base, layers=rows, total=total), row, times)


def test_gathered_ranks_golden(watched: Report) -> None:
    reports = [rank_report(watched, rank) for rank in range(len(RANK_FACTORS))]
    samples = [RankSample.of(report, rank, step=2) for rank, report in enumerate(reports)]
    text = merge_ranks(reports[0], samples).table()
    assert "median over 3 ranks" in text and "DDP all-reduce" in text
    check_golden("gathered_small_3_ranks.txt", text + "\n")


# -- the command line ------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return out


def conv_net(kernel: int, norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, kernel, padding=kernel // 2, bias=False),
        nn.ReLU(),
    ]
    if norm:
        layers.append(nn.BatchNorm2d(8))
    return nn.Sequential(*layers)


def test_compare_golden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    layerprof.analyze(conv_net(3), input_size=(1, 3, 64, 64), target="t4").to_json(old)
    layerprof.analyze(conv_net(5, norm=True), input_size=(1, 3, 64, 64), target="t4").to_json(new)
    out = cli(capsys, "compare", str(old), str(new))
    assert str(tmp_path) not in out
    check_golden("compare_k3_k5.txt", out)


def test_scale_golden(capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(
        capsys,
        "scale",
        "layerprof:demo_model",
        "--input-size",
        "8,3,128,128",
        "--target",
        "h100-sxm",
        "--link",
        "nvlink4",
    )
    check_golden("scale_demonet_h100.txt", out)


def test_devices_golden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``auto`` line names this machine: an empty cache (not measured yet) and a fixed identity."""
    from layerprof.hardware import identity

    monkeypatch.setenv("LAYERPROF_CACHE_DIR", str(tmp_path))
    fixed = identity.Identity("local-cpu", "Example CPU (golden file)", "cpu", None, "threads1")
    monkeypatch.setattr(identity, "identify", lambda device: fixed)
    out = cli(capsys, "devices")
    assert "this machine (local-cpu): Example CPU (golden file)" in out and "not measured yet" in out
    check_golden("devices.txt", out)
