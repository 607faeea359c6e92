"""Log lines, percentiles, the machine-speed loop and the figures table."""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def python_reference_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop (5M additions) in this process.

    These machines' speed drifts (by up to 2x within an hour, seen here), and the
    targets are absolute: this says how fast the machine ran while it was measured.
    """
    started = time.thread_time()
    total = 0
    for i in range(5_000_000):
        total += i
    return (time.thread_time() - started) * 1000


def machine_info() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def report_head(cfg: Any, **fields: Any) -> dict[str, Any]:
    """The start of a benchmark's JSON report: mode, time, ``fields`` (in order),
    the Config (without the URLs: they may hold passwords) and the warnings."""
    return {
        "mode": "small" if cfg.small else "full",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **fields,
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(cfg).items()
            if k not in {"database_url", "redis_url"}
        },
        "warnings": [],
    }


def status(ok: bool, applies: bool = True) -> str:
    return ("PASS" if ok else "MISS") if applies else "n/a"


def print_rows(report: dict[str, Any], title: str, rows: list[Row]) -> None:
    """The table of (figure, measured, target, baseline, PASS / MISS / n/a / "")
    rows under its title; the verdicts also go into the report."""
    report["verdicts"] = {r[0].strip(): r[4] for r in rows if r[4]}
    head = ("figure", "measured", "target", "baseline", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(title)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    print(line)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    print(line)


def print_tail(report: dict[str, Any], small_note: str, json_out: Path) -> None:
    """The warnings, the small mode's caveat, the total time and where the JSON is."""
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    if report["mode"] == "small":
        print(f"small mode: {small_note}")
    print(f"total {report['seconds_total']} s; JSON in {json_out}")
