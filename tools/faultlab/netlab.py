"""Network namespaces for N peers on one bridge, and real network faults between them.

Layout, all made by `NetLab.up()` and removed by `NetLab.down()`:

    namespace HUB        bridge br0, and one veth end per peer (hI)
    namespace PEER_I     veth v0 (the other end of hI), address 10.77.0.(I+10)/24, lo

Nothing is made in the root namespace, so the host's own network is never
touched, and removing the namespaces removes everything.  Faults:

* `partition(groups)`: in every peer's namespace an nftables table drops
  packets to and from the peers of other groups (`heal()` removes them);
* `link_down(i)` / `link_up(i)`: the peer's veth end on the bridge;
* `cap(i, rate)`: tc tbf on both ends of the peer's veth (`uncap(i)`).

netem (latency, loss) is not in every kernel and is not used: latency and
loss stay in the simulator.
"""

from __future__ import annotations

import os
import shutil
import subprocess

SUBNET = "10.77.0"
PORT = 7400
TABLE = "ptlab"


class LabError(Exception):
    """A namespace, link, nftables or tc command failed (with its error output)."""


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run as root, as CI does)"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (Debian: iproute2, nftables)"
    probe = f"ptprobe{os.getpid() % 100000}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def run(*cmd: str) -> None:
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")


class NetLab:
    """N peer namespaces joined by a bridge; see the module text."""

    def __init__(self, n: int, tag: str | None = None) -> None:
        self.n = n
        self.tag = tag or str(os.getpid() % 100000)
        self.hub = f"pt{self.tag}h"
        self.made: list[str] = []
        self.partitioned = False

    def ns(self, i: int) -> str:
        return f"pt{self.tag}p{i}"

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i + 10}"

    def listen(self, i: int) -> str:
        return f"{self.address(i)}:{PORT}"

    def up(self) -> None:
        run("ip", "netns", "add", self.hub)
        self.made.append(self.hub)
        run("ip", "-n", self.hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.hub, "link", "set", "br0", "up")
        for i in range(self.n):
            ns = self.ns(i)
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", self.hub, "link", "add", f"h{i}", "type", "veth",
                "peer", "name", "v0", "netns", ns)  # fmt: skip
            run("ip", "-n", self.hub, "link", "set", f"h{i}", "master", "br0")
            run("ip", "-n", self.hub, "link", "set", f"h{i}", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "v0")
            run("ip", "-n", ns, "link", "set", "v0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        self.made.clear()

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    # -- faults -----------------------------------------------------------------------

    def partition(self, groups: list[list[int]]) -> None:
        """Drop every packet between peers of different groups (nftables, in each peer)."""
        self.heal()
        for group in groups:
            others = [self.address(j) for g in groups if g is not group for j in g]
            if not others:
                continue
            where = "{ " + ", ".join(others) + " }"
            for i in group:
                hook = "type filter hook {} priority 0;"
                rules = (
                    f"table inet {TABLE} {{\n"
                    f"  chain out {{ {hook.format('output')} ip daddr {where} drop; }}\n"
                    f"  chain in {{ {hook.format('input')} ip saddr {where} drop; }}\n"
                    "}\n"
                )
                done = subprocess.run(
                    [*self.exec_prefix(i), "nft", "-f", "-"],
                    input=rules, check=False, capture_output=True, text=True,
                )  # fmt: skip
                if done.returncode != 0:
                    raise LabError(f"nft in {self.ns(i)}: {done.stderr.strip()}")
        self.partitioned = True

    def heal(self) -> None:
        """Remove every partition."""
        for i in range(self.n):
            subprocess.run(
                [*self.exec_prefix(i), "nft", "delete", "table", "inet", TABLE],
                check=False,
                capture_output=True,
            )
        self.partitioned = False

    def link_down(self, i: int) -> None:
        run("ip", "-n", self.hub, "link", "set", f"h{i}", "down")

    def link_up(self, i: int) -> None:
        run("ip", "-n", self.hub, "link", "set", f"h{i}", "up")

    def cap(self, i: int, rate: str) -> None:
        """Cap the peer's bandwidth both ways to `rate` (tc's units, e.g. 1mbit)."""
        for ns, dev in ((self.ns(i), "v0"), (self.hub, f"h{i}")):
            run("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms")  # fmt: skip

    def uncap(self, i: int) -> None:
        for ns, dev in ((self.ns(i), "v0"), (self.hub, f"h{i}")):
            subprocess.run(
                ["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                check=False,
                capture_output=True,
            )
