"""What an idle `headwater up` costs: CPU time, wake-ups and memory with nothing to do.

Starts `headwater up` on its defaults (the demo repository made from the template, which
is local, so the repository watch is on), waits until `/readyz` answers 200 and the
start-up work has settled, then reads the process's CPU time (user + system, from
/proc, children included) and its voluntary context switches over a window, and prints
the share of one core it used, its wake-ups per second, and its resident memory.
Target (issue 11): at most 1 % of a core; (issue 12): idle memory at most 120 MiB.

    python bench/idle.py [--seconds 30] [--repo PATH] [--deleted-branch]

`--deleted-branch` deletes the tracked branch of a local repository after the first
sync: the daemon must back off, not fetch several times a second.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

READY_TIMEOUT = 60.0
SETTLE_SECONDS = 5.0  # after ready: the first sync's garbage collection, the first polls
TARGET_CPU_PERCENT = 1.0
TARGET_RSS_MIB = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system time of `pid` and of its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def switches(pid: int) -> int:
    """Voluntary context switches of every thread of `pid`: roughly, its wake-ups."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"headwater up exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("headwater up did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repo", help="a flows repository (default: the demo repository)")
    parser.add_argument("--deleted-branch", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hw-idle-") as tmp:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "headwater.daemon.cli",
            "up",
            "--data-dir",
            f"{tmp}/data",
            "--port",
            str(port),
        ]
        if args.repo:
            command += ["--repo", args.repo]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")}
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port, process)
            ready = time.monotonic() - started
            if args.deleted_branch:
                repo = Path(args.repo or f"{tmp}/data/demo-repo")
                subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--detach"], check=True)
                subprocess.run(["git", "-C", str(repo), "branch", "-q", "-D", "main"], check=True)
            time.sleep(SETTLE_SECONDS)
            cpu_before, wakes_before = cpu_seconds(process.pid), switches(process.pid)
            time.sleep(args.seconds)
            cpu = cpu_seconds(process.pid) - cpu_before
            wakes = switches(process.pid) - wakes_before
            rss_mib = status(process.pid, "VmRSS") / 1024
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    percent = 100 * cpu / args.seconds
    print(f"machine: {platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"start to ready: {ready:.2f} s")
    print(f"idle over {args.seconds:.0f} s: {cpu * 1000:.0f} ms of CPU = {percent:.2f} % of a core")
    print(f"  (target at most {TARGET_CPU_PERCENT} %)")
    print(f"wake-ups: {wakes / args.seconds:.1f} a second (voluntary context switches)")
    print(f"resident memory: {rss_mib:.0f} MiB (target at most {TARGET_RSS_MIB:.0f} MiB)")


if __name__ == "__main__":
    main()
