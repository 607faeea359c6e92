"""The figures beside their targets and the bare loop's."""

from __future__ import annotations

from typing import Any

from benchcommon.cpu import NOISY_CORES
from benchcommon.report import Row, print_rows, print_tail, status

from broadcastbench.config import Config

TARGET_PER_S = 2_000
TARGET_RATIO = 0.5
# Memory is "flat" if the workers' peak grew by less than this from the mark to
# the end.
FLAT_GROWTH = 1.25


def _peak_mb(snapshot: dict[str, Any]) -> float:
    return max((w.get("VmHWM", 0) for w in snapshot["workers"]), default=0) / 1024


def print_table(report: dict[str, Any], cfg: Config) -> None:
    send, base = report["send"], report["baseline"]
    ratio = send["per_s"] / max(base["per_s"], 1)
    memory = send["memory_kb"]
    at_mark, at_end = _peak_mb(memory["at_mark"]), _peak_mb(memory["at_end"])
    flat = at_end <= at_mark * FLAT_GROWTH
    report["ratio"] = round(ratio, 2)
    rows: list[Row] = [
        (
            "send -> last hand-off",
            f"{send['per_s']:,} msg/s ({send['seconds']:g} s)",
            f">= {TARGET_PER_S:,}/s",
            f"{base['per_s']:,} msg/s (before {base['before']['per_s']:,}, "
            f"after {base['after']['per_s']:,})",
            status(send["per_s"] >= TARGET_PER_S, applies=not cfg.small),
        ),
        (
            "  x the bare loop",
            f"{ratio:.2f}",
            f">= {TARGET_RATIO:g}",
            "",
            status(ratio >= TARGET_RATIO, applies=not cfg.small),
        ),
        ("  send -> first hand-off", f"{send['first_hand_over_s']:g} s", "", "", ""),
        (
            "Python CPU a message",
            f"{send['cpu_ms_per_message']:.2f} ms",
            "",
            f"{base['cpu_ms_per_message']:.2f} ms",
            "",
        ),
        (
            "  send / bare loop",
            f"{send['cpu_ms_per_message'] / max(base['cpu_ms_per_message'], 1e-9):.2f}",
            "",
            "",
            "",
        ),
        (
            "PostgreSQL CPU a message",
            f"{send['postgres_cpu_ms_per_message']:.2f} ms",
            "",
            "",
            "",
        ),
        (
            "worker peak RSS",
            f"{at_mark:.0f} MB at {memory['at_mark']['messages']:,}, "
            f"{at_end:.0f} MB at {memory['at_end']['messages']:,}",
            "flat",
            "",
            status(flat),
        ),
        (
            "handed over once",
            f"{send['messages'] - send['handed_over_twice']:,} of {cfg.recipients:,}",
            "all",
            "",
            status(
                send["messages"] == cfg.recipients and not send["handed_over_twice"]
            ),
        ),
    ]
    title = (
        f"Broadcast: {cfg.recipients:,} recipients, {cfg.rq_workers} workers; the bare "
        f"loop made {base['before']['messages']:,} messages in {base['processes']} "
        "processes before the send and again after"
    )
    print_rows(report, title, rows)
    for phase in ("baseline", "send"):
        cpu = report[phase]["cpu"]
        if cpu["other"] >= NOISY_CORES:
            report["warnings"].append(
                f"{phase}: NOT QUIET, other processes used {cpu['other']:.2f} cores"
            )
    print(
        "machine speed: reference loop "
        f"{report['reference_loop_ms_start']} ms at the start, "
        f"{report['reference_loop_ms_end']} ms at the end"
    )
    print_tail(report, "5,000 recipients: the figures say little", cfg.json_out)
