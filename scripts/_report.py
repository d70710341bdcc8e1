"""What the diagnostic scripts share: the check-pack-or-store argument and the JSON they write."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_store_arguments(ap: argparse.ArgumentParser) -> None:
    """``--seed S`` (the check pack data/observer-check-sS.zarr) or ``--store PATH``."""
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int, help="the check pack data/observer-check-sSEED.zarr")
    src.add_argument("--store", help="any truth store with a parameter table")


def store_of(args: argparse.Namespace) -> str:
    return args.store or f"data/observer-check-s{args.seed}.zarr"


def write_json(path: str, out: dict) -> int:
    """Write ``out`` to ``path`` (folders made), say so; 0 (the script's exit status)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0
