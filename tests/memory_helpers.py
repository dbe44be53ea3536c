"""Measuring what a command-line run allocates: the proportional set size (PSS) of its
process tree, sampled from Linux's /proc/<pid>/smaps_rollup while it runs.

What --memory-limit caps is the memory the run allocates: its anonymous pages
(Pss_Anon and Pss_Shmem), where PSS counts a page shared with a forked worker once,
split between them. The program's code and libraries are files mapped from disk, shared
with every other process that maps them, so their PSS moves when other processes start or
end; they are left out. The baseline is the process once it has loaded gmmcli and the
libraries a command loads on first use, measured by the process itself before the command
starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Run as `python -c RUN baseline-file gmmcli-arguments...`.
RUN = """
import sys
import gmmcli.cli
import numpy as np
import pyarrow as pa
import rich._emoji_codes  # loaded by rich's first markup, held whatever the command

pa.array(np.zeros(1)).to_numpy()  # pyarrow loads its pandas shim (pandas, if installed)
try:  # typer's help and parsing machinery
    gmmcli.cli.app(["fit", "--help"], standalone_mode=False)
except SystemExit:
    pass
with open("/proc/self/smaps_rollup") as rollup:
    fields = dict(line.split(":", 1) for line in rollup if line.endswith("kB\\n"))
with open(sys.argv[1], "w") as out:
    out.write(str(sum(int(fields[n].split()[0]) for n in ("Pss_Anon", "Pss_Shmem"))))
sys.argv = ["gmmcli", *sys.argv[2:]]
gmmcli.cli.main()
"""


def pss_unavailable() -> str | None:
    """Why PSS cannot be measured here, or None."""
    try:
        fields = Path("/proc/self/smaps_rollup").read_text()
    except OSError:
        return "no /proc/<pid>/smaps_rollup (Linux 4.14 or later)"
    if "Pss_Anon" not in fields:
        return "smaps_rollup has no Pss_Anon (Linux 5.9 or later)"
    if not Path(f"/proc/self/task/{os.getpid()}/children").exists():
        return "no /proc/<pid>/task/<tid>/children to find forked workers"
    return None


def _anonymous_pss(pid: int) -> int:
    """KB of the process's anonymous PSS (0 once it has ended)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if line.endswith("kB\n"))
    except (OSError, ValueError):
        return 0
    return sum(int(fields.get(name, "0 kB").split()[0]) for name in ("Pss_Anon", "Pss_Shmem"))


def _tree(pid: int) -> list[int]:
    """The process and its descendants."""
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for child in children:
                found += _tree(int(child))
    except OSError:
        pass
    return found


def peak_above_baseline(args: list[str], folder: Path, timeout: float = 120) -> tuple[int, int]:
    """(the exit code, the highest anonymous PSS in bytes of the run's process tree above
    its baseline) of ``gmmcli args`` run in ``folder``, sampled every 2 ms."""
    baseline, errors = folder / "baseline.kb", folder / "stderr.txt"
    with open(errors, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", RUN, str(baseline), *map(str, args)],
            cwd=folder,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    peak, deadline = 0, time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gmmcli {args} ran past {timeout} s")
        if baseline.exists():
            peak = max(peak, sum(_anonymous_pss(pid) for pid in _tree(process.pid)))
        time.sleep(0.002)
    assert baseline.exists(), errors.read_text()
    return process.returncode, (peak - int(baseline.read_text())) * 1024
