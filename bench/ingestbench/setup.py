"""Set-up: one run per database, the app's environment, manage.py, the sources,
and the granian server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
from benchcommon.databases import app_env
from benchcommon.errors import SetupFailed
from benchcommon.paths import PYTHON
from benchcommon.server import Proc, free_port, granian_command, wait_ready

from ingestbench.config import Config


def server_env(cfg: Config) -> dict[str, str]:
    env = app_env(cfg, os.environ.get("BENCH_SERVER_LOG_LEVEL", "WARNING"))
    # Database connections live through the run. With the default 60 s they were
    # replaced in the middle of the track phase, and a backend that exits takes
    # its CPU out of the per-process figures: PostgreSQL looked cheap, and the
    # machine looked busy with "other" work.
    env["DB_CONN_MAX_AGE"] = "3600"
    return env


def manage(cfg: Config, *args: str) -> str:
    proc = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=cfg.app_dir,
        env=server_env(cfg),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SetupFailed(
            f"manage.py {' '.join(args[:1])} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


CREATE_SOURCES = """
import json
from apps.events.models import Source
from apps.events.services import source_create
api, api_key = source_create(name="bench-api", kind=Source.Kind.SERVER)
copy, _ = source_create(name="bench-copy", kind=Source.Kind.SERVER)
print(json.dumps({"api_id": api.pk, "api_key": api_key, "copy_id": copy.pk}))
"""


def create_sources(cfg: Config) -> dict[str, Any]:
    out = manage(cfg, "shell", "-c", CREATE_SOURCES)
    return orjson.loads(out.strip().splitlines()[-1])


# -- the server ------------------------------------------------------------------------


class Server(Proc):
    """granian serving config.wsgi, in its own process group."""

    def __init__(self, cfg: Config, log_path: Path) -> None:
        self.cfg = cfg
        self.port = cfg.port or free_port()
        command = granian_command(
            self.port, cfg.workers, cfg.blocking_threads, cfg.backpressure
        )
        super().__init__("server", command, server_env(cfg), log_path, cfg.app_dir)

    def wait_ready(self, key: str, timeout: float = 60.0) -> None:
        """Until every worker has loaded Django: a bad key must get its 401."""
        wait_ready(self, self.port, self.cfg.workers, key, timeout)
