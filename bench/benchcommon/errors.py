"""The two ways a benchmark fails, and how main() turns them into exit codes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


class BenchBroken(Exception):
    """Something went wrong that makes the figures meaningless (exit 1)."""


class SetupFailed(Exception):
    """The environment could not be prepared (exit 2)."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM behaves like Ctrl-C: the finally blocks stop what the run started."""
    signal.signal(signal.SIGTERM, _interrupt)


def guarded(run: Callable[[], Any]) -> tuple[Any, int | None]:
    """``run()``'s result, or the exit code of what stopped it: 130 on Ctrl-C, 2 if
    set-up failed, 1 if the run broke (said on stderr)."""
    try:
        return run(), None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return None, 130
    except SetupFailed as exc:
        print(f"SET-UP FAILED: {exc}", file=sys.stderr)
        return None, 2
    except BenchBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return None, 1


def finish(report: dict[str, Any], json_out: Path) -> int:
    """Write the report as JSON; exit 1 if it lists problems (a MISS is not one)."""
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if report.get("problems"):
        print("\nBROKEN:", file=sys.stderr)
        for problem in report["problems"]:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


def bench_main(
    cfg: Any, run: Callable[[Any], dict[str, Any] | None], *printers: Any
) -> int:
    """Run the benchmark, print its report (``printers``, in order), write the JSON;
    the exit status (see guarded and finish). A run that returns None (a profile)
    printed what it had to say."""
    from benchcommon.databases import lock_database  # it imports this module

    stop_on_sigterm()
    # A shell starts background jobs with SIGINT ignored: Ctrl-C (or kill -INT) must
    # still stop the run and what it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def locked() -> dict[str, Any]:
        lock = lock_database(cfg)
        try:
            return run(cfg)
        finally:
            lock.close()

    report, code = guarded(locked)
    if code is not None:
        return code
    if report is None:
        return 0
    for printer in printers:
        printer(report, cfg)
    return finish(report, cfg.json_out)
