"""CPU time and resident memory of a process and its descendants, read from /proc (Linux).

A target such as ``nexus-fast serve --workers 2`` is a supervisor and its worker processes, so every figure is
summed over the process tree. CPU time is ``utime + stime`` from ``/proc/PID/stat`` (fields 14 and 15, in clock
ticks; proc(5)) plus fields 16 and 17 (``cutime + cstime``: CPU of children it has already reaped, so a PostgreSQL
backend that served one ``pgbench -C`` transaction and exited still counts); resident memory is ``VmRSS`` from ``/proc/PID/status``.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; split after its closing parenthesis.
    return text[text.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its living descendants."""
    tree = children_map()
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if _stat_fields(current) is None:
            continue
        found.append(current)
        pending.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds consumed so far by ``pids`` and by the children they have reaped.

    Summed over a whole live tree this never counts a process twice: a process is either alive (its own utime and
    stime) or reaped (inside its parent's cutime and cstime).
    """
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After the command name: state is field 3 -> index 0, so utime (14), stime (15), cutime (16) and
            # cstime (17) are indexes 11 to 14.
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / _TICKS


def rss_bytes(pids: list[int]) -> int:
    """Sum of VmRSS over ``pids``."""
    total = 0
    for pid in pids:
        try:
            for line in (_PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def tree_cpu_seconds(pid: int) -> float:
    return cpu_seconds(process_tree(pid))


def tree_rss_bytes(pid: int) -> int:
    return rss_bytes(process_tree(pid))
