"""Where things are: the repository, bench/out/ and this Python."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
OUT_DIR = ROOT / "bench" / "out"
PYTHON = sys.executable
