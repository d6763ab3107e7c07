"""CPU time of processes from /proc, for `oms bench`: what each process spent per order in a measured window.

CPU time per order is robust to a busy machine in a way throughput is not: a process that waits for the CPU
is not charged for the wait.
"""

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat this module uses, in clock ticks."""
    ppid: int
    own_ticks: int  # utime + stime
    reaped_children_ticks: int  # cutime + cstime: children that exited and were waited for


def parse_stat(text: str) -> Stat:
    """/proc/<pid>/stat: `pid (comm) state ppid ...`; comm may hold spaces and parentheses, so the fields are
    counted from the last closing parenthesis (proc(5): utime, stime, cutime, cstime are fields 14-17)."""
    fields = text[text.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return Stat(ppid=int(fields[1]), own_ticks=utime + stime, reaped_children_ticks=cutime + cstime)


def read_stat(pid: int) -> Stat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None


def process_seconds(pid: int) -> float | None:
    """CPU seconds a process has used so far (None: it is gone)."""
    stat = read_stat(pid)
    return None if stat is None else stat.own_ticks / TICKS_PER_SECOND


def tree_seconds(pid: int, stats: Mapping[int, Stat]) -> float | None:
    """A process with its children, living and reaped: Postgres's postmaster and its backends, say."""
    root = stats.get(pid)
    if root is None:
        return None
    children = sum(s.own_ticks for s in stats.values() if s.ppid == pid)
    return (root.own_ticks + root.reaped_children_ticks + children) / TICKS_PER_SECOND


def all_stats() -> dict[int, Stat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


Sample = Callable[[], dict[str, float | None]]


def sampler(processes: Mapping[str, int], trees: Mapping[str, int] | None = None) -> Sample:
    """Reads the CPU seconds of each named process (and of each named process tree) when called."""
    def sample() -> dict[str, float | None]:
        seconds: dict[str, float | None] = {name: process_seconds(pid) for name, pid in processes.items()}
        if trees:
            stats = all_stats()
            seconds |= {name: tree_seconds(pid, stats) for name, pid in trees.items()}
        return seconds
    return sample


@dataclass(frozen=True)
class CpuPerOrder:
    """Milliseconds of CPU per order of each process over a window; None for one that was not running
    throughout (a restart in the window makes its figure meaningless)."""
    ms: dict[str, float | None]

    @property
    def total(self) -> float:
        return self.total_without(frozenset())

    def total_without(self, shared: Collection[str]) -> float:
        """The processes' total, leaving out `shared` ones (a broker or database others use too)."""
        return sum(v for name, v in self.ms.items() if v is not None and name not in shared)


def per_order(before: Mapping[str, float | None], after: Mapping[str, float | None], orders: int, *,
              idle: Mapping[str, float] | None = None, seconds: float = 0.0) -> CpuPerOrder:
    """`idle`: the cores each process keeps busy with no orders (polls, timers; others' work on a shared one),
    taken off for the `seconds` the window lasted, so that a run slowed down by a busy machine is not charged
    its longer idle time."""
    def ms(name: str) -> float | None:
        start, end = before.get(name), after.get(name)
        if start is None or end is None or end < start or orders <= 0:
            return None
        return max(0.0, end - start - (idle or {}).get(name, 0.0) * seconds) * 1000 / orders
    return CpuPerOrder({name: ms(name) for name in before})


def idle_cores(before: Mapping[str, float | None], after: Mapping[str, float | None],
               seconds: float) -> dict[str, float]:
    """Each process's cores busy between two samples taken with no orders in flight."""
    return {name: busy_cores({name: start}, after, seconds) for name, start in before.items()}


def busy_cores(before: Mapping[str, float | None], after: Mapping[str, float | None], seconds: float) -> float:
    """How many cores the processes kept busy between two samples, together (one that is gone counts none)."""
    return sum(end - start for name, start in before.items()
               if start is not None and (end := after.get(name)) is not None and end >= start) / seconds


def back_to_idle(levels: Sequence[float], idle: float | None, *, margin: float = 0.15, flat_for: int = 3,
                 ceiling: float = 1.0) -> bool:
    """Whether processes whose busy cores per second were `levels` (oldest first) are idle again after a burst of
    work: within `margin` of their `idle` use; or, before that is known, `flat_for` seconds within `margin` of each
    other and under `ceiling` (a lag being worked through keeps a core or more busy)."""
    if not levels:
        return False
    if idle is not None:
        return levels[-1] < idle + margin
    last = levels[-flat_for:]
    return len(last) == flat_for and max(last) < ceiling and max(last) - min(last) < margin


def table(rows: Mapping[str, CpuPerOrder], shared: frozenset[str] = frozenset()) -> str:
    """One line per process, a column per measured system, then the totals. `shared`: processes other work
    runs on too (a shared broker or database), whose figures are upper bounds."""
    names = list(dict.fromkeys(name for row in rows.values() for name in row.ms))
    width = max(len(name) + 2 for name in [*names, TOTAL])
    lines = [f"{'CPU ms per order':<{width}}" + "".join(f"{system:>24}" for system in rows)]
    for name in names:
        label = f"{name}*" if name in shared else name
        lines.append(f"{label:<{width}}" + "".join(f"{_ms(row.ms.get(name, float('nan'))):>24}"
                                                     for row in rows.values()))
    own = {system: row.total_without(shared) for system, row in rows.items()}
    lines.append(f"{TOTAL:<{width}}" + "".join(f"{own[system]:>24.2f}" for system in rows))
    if shared:
        lines.append("* shared with whatever else runs on this machine: an upper bound")
    return "\n".join(lines)


TOTAL = "total (without *)"


def _ms(value: float | None) -> str:
    if value is None:
        return "restarted/gone"
    return "" if value != value else f"{value:.2f}"
