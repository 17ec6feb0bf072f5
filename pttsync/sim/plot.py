"""`pttsync simulate --plot FILE.png|FILE.svg`: a simulation's report as one figure.

Three panels, from what the report holds (`SimReport.timeline` and `series`):

* peers holding the final digest over virtual time (a step line, with the
  live peers behind it), partitions, crash-down intervals and the masters'
  outage shaded, churn marked, the write window as a band along the top;
* the CDF of the writes' spread times (from a write's acknowledgement until
  every live peer held it), with the median and p99;
* bytes sent per peer, largest first (a log scale when they span two orders
  of magnitude or more).

The seed is in the title and the command that reproduces the run in the
footer.  matplotlib is an optional extra (`pip install 'pttsync[plot]'`): it is
imported only here, and only when a figure is drawn, never through pyplot (no
window, no global backend: a bare `Figure` on the Agg canvas, or the SVG one).
Nothing in the figure depends on the machine (no wall time) and the files
carry no date, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .report import SimReport

FORMATS = (".png", ".svg")
INSTALL = "pip install 'pttsync[plot]'"

# Distinct colours for what the timeline panel shades, and their legend labels.
SHADES = {
    "partitions": ("tab:orange", 0.22, "partition"),
    "crashes": ("tab:red", 0.16, "crashed peer(s) down"),
    "masters_offline": ("tab:purple", 0.22, "masters offline"),
}
LOG_SPAN = 100  # a log scale when the largest value is this many times the smallest


def check_target(path: str) -> None:
    """UsageError unless `path` names a .png or .svg file and matplotlib can be imported:
    checked before a run, so a bad --plot costs no simulation."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(
            f"--plot {path}: the figure is written as PNG or SVG: name it FILE.png or FILE.svg"
        )
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional, and slow to import
    except ImportError:
        raise UsageError(f"--plot needs matplotlib: {INSTALL}") from None


def write_plot(report: SimReport, path: Path) -> None:
    """Draw `report` into `path` (.png or .svg, as check_target allows)."""
    import matplotlib  # noqa: PLC0415 - optional, and slow to import
    import matplotlib.style  # noqa: PLC0415

    fmt = path.suffix.lower().lstrip(".")
    # The default style, whatever the user's matplotlibrc says: the same figure anywhere.
    rc = matplotlib.rc_context(
        {
            "svg.hashsalt": "pttsync-sim",  # the SVG's ids: the same in every run
            "svg.fonttype": "none",  # text as text: titles searchable, files small
            "font.size": 9.0,
            "axes.titlesize": 10.5,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    with matplotlib.style.context("default"), rc:
        fig = figure(report)
        if fmt == "svg":
            metadata: dict[str, Any] = {"Date": None, "Creator": "pttsync simulate --plot"}
        else:
            metadata = {"Software": None, "Title": f"pttsync simulate, seed {report.seed}"}
        fig.savefig(path, format=fmt, dpi=100, metadata=metadata)


def figure(report: SimReport) -> Figure:
    """The three panels of `report`, on a figure of their own (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(11.0, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.2, 1.0))
    _timeline(fig.add_subplot(grid[0, :]), report)
    _spread(fig.add_subplot(grid[1, 0]), report)
    _bytes(fig.add_subplot(grid[1, 1]), report)
    fig.suptitle(_title(report), fontsize=12)
    footer = textwrap.fill(f"reproduce: {report.reproduce or '(not given)'}", 150)
    fig.supxlabel(footer, fontsize=8, family="monospace", color="0.3")
    return fig


def _title(report: SimReport) -> str:
    verdict = "OK" if report.ok else "FAILED"
    peers, writes = report.peers, report.writes
    if report.converged and report.convergence_s is not None:
        end = f"converged {report.convergence_s:.3f} s after the last disturbance"
    else:
        end = "did NOT converge"
    return (
        f"pttsync simulate, seed {report.seed}: {verdict}, {peers['live']} live peers"
        f" {end}; {writes['acknowledged']:,} writes, {report.virtual_s:.1f} virtual s"
    )


def _timeline(ax: Axes, report: SimReport) -> None:
    """Panel 1: who holds the final digest, over virtual time, with the faults."""
    rows = report.timeline
    t = [float(r["t"]) for r in rows]
    live, agree = [r["live"] for r in rows], [r["agree_final"] for r in rows]
    if rows:  # a sample holds until the next one: draw the last one's interval too
        t.append(t[-1] + float(report.config.get("sample_every", 1.0)))
        live.append(live[-1])
        agree.append(agree[-1])
    end = max([*t, report.virtual_s, 1.0])
    ax.step(t, live, where="post", color="0.55", lw=1.2, label="live peers")
    ax.step(t, agree, where="post", color="tab:blue", lw=2.0, label="holding the final digest")
    windows = report.series.get("fault_windows", {})
    for kind, (colour, alpha, label) in SHADES.items():
        for i, span in enumerate(windows.get(kind, [])):
            ax.axvspan(
                span[0], span[1], color=colour, alpha=alpha, lw=0, label=None if i else label
            )
    start_w, end_w = report.series.get("write_window", (0.0, 0.0))
    if end_w > start_w:
        ax.axvspan(
            start_w, end_w, ymin=0.97, ymax=1.0, color="tab:green", alpha=0.7, lw=0,
            label="write window",
        )  # fmt: skip
    for key, marker, colour, label in (
        ("leaves", "v", "black", "peer left"),
        ("joins", "^", "tab:green", "peer joined"),
    ):
        times = windows.get(key, [])
        if times:
            ax.plot(
                times, [0.93] * len(times), marker, color=colour, ms=5, ls="none",
                transform=ax.get_xaxis_transform(), label=label,
            )  # fmt: skip
    top = max([*live, 1])
    ax.set_xlim(0.0, end)
    ax.set_ylim(0.0, top * 1.08)
    ax.set_title("Peers holding the final digest")
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel("peers")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _spread(ax: Axes, report: SimReport) -> None:
    """Panel 2: the CDF of the writes' spread times."""
    points = report.series.get("spread_cdf", [])
    count = int(report.spread_s.get("writes", len(points)))
    ax.set_title(f"Spread of writes (CDF of {count:,})")
    ax.set_xlabel("seconds from a write until every live peer held it")
    ax.set_ylabel("fraction of writes")
    ax.set_ylim(0.0, 1.02)
    if not points:
        ax.text(0.5, 0.5, "no write reached every live peer", ha="center", transform=ax.transAxes)
        return
    xs = [points[0][0]] + [p[0] for p in points]
    ys = [0.0] + [p[1] for p in points]
    ax.step(xs, ys, where="post", color="tab:blue", lw=1.8, label="writes")
    for name, style in (("median", "--"), ("p99", ":")):
        value = float(report.spread_s.get(name, 0.0))
        ax.axvline(value, color="0.25", ls=style, lw=1.0, label=f"{name} {value:.3f} s")
    low, high = xs[0], xs[-1]
    if low > 0 and high >= LOG_SPAN * low:
        ax.set_xscale("log")
    ax.legend(loc="lower right", fontsize=8)


def _bytes(ax: Axes, report: SimReport) -> None:
    """Panel 3: bytes sent by each peer, largest first."""
    from matplotlib.ticker import EngFormatter, MaxNLocator  # noqa: PLC0415

    values = sorted(report.series.get("bytes_per_peer", []), reverse=True)
    ax.set_title(f"Bytes sent per peer ({len(values):,} peers)")
    ax.set_xlabel("peers, by bytes sent (rank)")
    ax.set_ylabel("bytes sent")
    if not values:
        return
    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) >= LOG_SPAN * min(positive)
    base = min(positive) / 2 if log else 0.0
    # One stepped polygon, not a bar each: as light with 10,000 peers as with 10.
    edges = [i + 0.5 for i in range(len(values) + 1)]
    ax.stairs(values, edges, baseline=base, fill=True, color="tab:blue", alpha=0.75)
    median = float(report.bytes["per_peer"]["median"])
    size = EngFormatter(unit="B", places=1)
    ax.axhline(median, color="0.25", ls="--", lw=1.0, label=f"median {size(median)}")
    if log:
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(EngFormatter(unit="B"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, len(values) + 0.5)
    ax.legend(loc="upper right", fontsize=8)
