"""`pttsync simulate --plot FILE.png|FILE.svg`, and the fault columns of the CSV timeline.

One small faulty run (5 peers, 8 writes, a partition and a crash: a fraction of a
second of wall time) drawn as PNG and SVG, byte for byte the same for the same seed;
the option's checks, made before any simulation runs (the extension, matplotlib
missing); the timeline's fault columns against the plan; the series the figure
draws.  The tests that draw need matplotlib (`pip install 'pttsync[plot]'`) and skip
without it, saying so.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pttsync.cli import main
from pttsync.cli.simulate import command_line
from pttsync.sim import FaultKind, SimConfig, make_plan, simulate
from pttsync.sim.observe import cdf_points, fault_windows
from pttsync.sim.plan import Fault
from pttsync.sim.report import TIMELINE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
NO_MATPLOTLIB = "matplotlib is not installed: pip install 'pttsync[plot]' to run the plot tests"

# Times off the 1 s sample grid, so each sample is clearly inside or outside a fault.
CFG = SimConfig(peers=5, writes=8, seed=4, crashes=1, partitions=((6.5, 12.5),))
ARGS = [
    "simulate", "--peers", "5", "--writes", "8", "--seed", "4", "--crash", "1",
    "--partition", "6.5:12.5", "--no-progress", "--jobs", "1",
]  # fmt: skip
TITLES = ("Peers holding the final digest", "Spread of writes", "Bytes sent per peer")


def draw(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> bytes:
    """Run the small simulation with --plot into tmp_path/name: the file's bytes."""
    path = tmp_path / name
    assert main([*ARGS, "-q", "--plot", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("OK: 5 live peers converged"), out + err
    assert "Traceback" not in err
    return path.read_bytes()


def svg_text(data: bytes) -> str:
    """Every piece of text in an SVG (which must parse as XML)."""
    root = ET.fromstring(data)
    return "\n".join(t for el in root.iter() for t in (el.text or "",) if t.strip())


def test_plot_writes_a_png_the_same_for_the_same_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason=NO_MATPLOTLIB)
    first = draw(tmp_path, "a.png", capsys)
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(first) > 10_000
    assert draw(tmp_path, "b.PNG", capsys) == first  # the suffix in any case


def test_plot_writes_an_svg_with_three_panels_the_same_for_the_same_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason=NO_MATPLOTLIB)
    first = draw(tmp_path, "a.svg", capsys)
    text = svg_text(first)
    for title in TITLES:
        assert title in text
    assert "seed 4" in text  # the title
    assert command_line(CFG) in text  # the footer: how to run it again
    assert b"<dc:date>" not in first  # no date: nothing changes from run to run
    assert draw(tmp_path, "b.svg", capsys) == first
    # ... and the same in another process, with another hash seed.
    other = tmp_path / "c.svg"
    proc = subprocess.run(
        [sys.executable, "-m", "pttsync", *ARGS, "-q", "--plot", str(other)],
        env={**os.environ, "PYTHONHASHSEED": "2718"}, cwd=REPO, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert other.read_bytes() == first


def test_the_plot_of_a_run_with_every_kind_of_fault(tmp_path: Path) -> None:
    """Masters offline, churn and late joiners are drawn too (no CLI: the library call)."""
    pytest.importorskip("matplotlib", reason=NO_MATPLOTLIB)
    from pttsync.sim.plot import write_plot  # noqa: PLC0415 - needs matplotlib

    cfg = SimConfig(peers=6, writes=6, seed=2, churn=1, late=1, masters_offline=(8.5, 14.5))
    report = simulate(cfg, reproduce=command_line(cfg))
    assert report.ok, report.trace()
    windows = report.series["fault_windows"]
    assert windows["masters_offline"] == [[8.5, 14.5]]
    assert len(windows["leaves"]) == 1 and len(windows["joins"]) == 2  # churn + the late one
    path = tmp_path / "all.svg"
    write_plot(report, path)
    text = svg_text(path.read_bytes())
    for label in ("masters offline", "peer left", "peer joined", "write window"):
        assert label in text


@pytest.mark.parametrize("name", ["run.pdf", "run", "run.png.txt"])
def test_a_plot_file_neither_png_nor_svg_is_refused_before_the_run(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = refuse_to_run(monkeypatch)
    assert main([*ARGS, "--plot", str(tmp_path / name)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not ran
    assert err.startswith("pttsync: error: --plot ")
    assert "name it FILE.png or FILE.svg" in err
    assert not (tmp_path / name).exists()


def test_without_matplotlib_plot_names_the_install_command_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = refuse_to_run(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert main([*ARGS, "--plot", str(tmp_path / "run.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not ran
    assert err == "pttsync: error: --plot needs matplotlib: pip install 'pttsync[plot]'\n"


def test_a_plot_into_a_missing_directory_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = refuse_to_run(monkeypatch)
    assert main([*ARGS, "--plot", "/nonexistent/dir/run.svg"]) == 2
    assert "cannot write the plot to /nonexistent/dir/run.svg" in capsys.readouterr().err
    assert not ran


def refuse_to_run(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make any simulation run fail the test; the list notes attempts."""
    from pttsync.sim import run  # noqa: PLC0415

    ran: list[Any] = []

    def no_run(*args: Any, **kwargs: Any) -> Any:
        ran.append(args)
        raise AssertionError("the simulation ran")

    monkeypatch.setattr(run, "run_plan", no_run)
    return ran


def test_a_run_without_plot_never_imports_matplotlib() -> None:
    code = (
        "import sys\n"
        "from pttsync.cli import main\n"
        "assert main(['simulate', '--peers', '3', '--writes', '2', '-q']) == 0\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


# -- the timeline's fault columns ------------------------------------------------------------


def test_the_timeline_has_the_fault_columns_of_the_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    assert main([*ARGS, "-q", "--timeline", str(path)]) == 0
    capsys.readouterr()
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(TIMELINE_COLUMNS)
    assert TIMELINE_COLUMNS[:6] == (
        "t", "live", "agree_final", "distinct_digests", "writes_done", "messages",
    )  # fmt: skip  # the old columns first, in their order: old readers keep working
    rows = list(csv.DictReader(io.StringIO(text)))

    faults = make_plan(CFG).faults
    (crash,) = [f for f in faults if f.kind is FaultKind.CRASH]
    (restart,) = [f for f in faults if f.kind is FaultKind.RESTART]
    (peer,) = crash.peers
    times = [float(r["t"]) for r in rows]
    assert times[-1] > restart.at and not {crash.at, restart.at} & set(times)
    for r, t in zip(rows, times, strict=True):
        down = crash.at < t < restart.at
        assert int(r["partitions"]) == (6.5 <= t < 12.5), t
        assert int(r["down"]) == down, t
        assert r["masters_offline"] == r["left"] == "0"
        if t >= CFG.ramp + 1:  # every peer has started: up or down
            assert int(r["live"]) + int(r["down"]) == CFG.peers, t
    events = {float(r["t"]): r["events"] for r in rows if r["events"]}
    first_after = {at: min(t for t in times if t > at) for at in (crash.at, restart.at)}
    assert events == {
        7.0: "partition into groups of 3, 2",
        13.0: "heal into groups of 3, 2",
        first_after[crash.at]: f"crash peer{peer}",
        first_after[restart.at]: f"restart peer{peer}",
    }


def test_the_help_documents_every_timeline_column(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    table = out[out.index("the timeline (--timeline FILE.csv)") :]
    for column in TIMELINE_COLUMNS:
        assert f"\n  {column} " in table
    assert "--plot FILE" in out and "pip install 'pttsync[plot]'" in out


# -- what the figure draws: the report's series ------------------------------------------


def test_the_report_holds_what_the_plot_draws() -> None:
    report = simulate(CFG)
    assert report.ok, report.trace()
    series = report.series
    per_peer = series["bytes_per_peer"]
    assert len(per_peer) == CFG.peers and sum(per_peer) == report.bytes["total"]
    assert min(per_peer) == report.bytes["per_peer"]["min"]
    cdf = series["spread_cdf"]
    assert len(cdf) == report.spread_s["writes"] == 8
    assert cdf[-1] == [report.spread_s["max"], 1.0]
    assert [p[0] for p in cdf] == sorted(p[0] for p in cdf)
    assert series["write_window"] == list(CFG.write_window())
    plan = make_plan(CFG)
    at = {f.kind: round(f.at, 6) for f in plan.faults}
    assert series["fault_windows"] == {
        "partitions": [[6.5, 12.5, 2]],
        "crashes": [[at[FaultKind.CRASH], at[FaultKind.RESTART], 1]],
        "masters_offline": [],
        "leaves": [],
        "joins": [],
    }
    # The series is opt-in in the JSON (the CLI's --json is unchanged), and reproducible.
    assert "series" not in report.to_json()
    assert report.to_json(series=True)["series"] == series
    assert report.without_wall_time()["series"] == series


def test_the_spread_cdf_stays_small() -> None:
    assert cdf_points([]) == []
    assert cdf_points([0.2, 0.1]) == [[0.1, 0.5], [0.2, 1.0]]
    many = cdf_points([i / 1000 for i in range(10_000, 0, -1)])
    assert len(many) == 1000
    assert many[0] == [0.01, 0.001] and many[499] == [5.0, 0.5] and many[-1] == [10.0, 1.0]


def test_crash_windows_merge_into_when_some_peer_was_down() -> None:
    crash, restart = FaultKind.CRASH, FaultKind.RESTART
    faults = (
        Fault(10.0, crash, (3,)),
        Fault(12.0, crash, (4,)),
        Fault(15.0, crash, (3,)),  # already down: back at its first restart, 20
        Fault(18.0, restart, (4,)),
        Fault(20.0, restart, (3,)),
        Fault(30.0, restart, (3,)),
        Fault(40.0, crash, (5,)),  # no restart in the plan (a shrunk one): down to the end
    )
    windows = fault_windows(faults, end=99.0)
    assert windows["crashes"] == [[10.0, 20.0, 3], [40.0, 99.0, 1]]
