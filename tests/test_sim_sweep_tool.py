"""tools/sim_sweep.py, briefly: random simulator settings, each a valid run, and a short
sweep that holds every invariant.  Long sweeps: `python tools/sim_sweep.py --runs 500`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pttsync.cli.main import build_parser
from pttsync.cli.simulate import config_from
from tools.sim_sweep import draw

TOOL = Path(__file__).parent.parent / "tools" / "sim_sweep.py"


def test_every_drawn_setting_is_a_valid_simulation_and_a_function_of_its_seed() -> None:
    parser = build_parser()
    seen: set[str] = set()
    for i in range(300):
        args = draw(random.Random(f"1/{i}"), max_peers=16)
        assert args == draw(random.Random(f"1/{i}"), max_peers=16)
        cfg = config_from(parser.parse_args(["simulate", *args]))  # raises if out of range
        assert cfg.peers <= 16
        seen.update(a for a in args if a.startswith("--"))
    # Over 300 draws, every fault and setting is tried.
    for flag in ("--loss", "--partition", "--crash", "--churn", "--late", "--masters-offline",
                 "--skew-ms", "--push-mesh", "--no-push", "--partition-groups", "--expiry",
                 "--latency-dist", "--bandwidth", "--sync-interval", "--visit-interval", "--hot",
                 "--store", "--transport"):  # fmt: skip
        assert flag in seen


def test_a_short_sweep_holds_every_invariant() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--runs", "2", "--max-peers", "8", "--json", "--jobs", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out == {"runs": 2, "failed": 0, "failures": []}
