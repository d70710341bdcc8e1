"""How every ``scripts/bench_*.py`` ends: stamp the machine's load, write the JSON, say where.

The load average at the end sits beside the one at the start (each script records that in its
``machine`` section), so a reader can tell an idle run from one on a shared machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_report(result: dict, out: str | os.PathLike) -> Path:
    result.setdefault("machine", {})["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path
