"""Opening, creating and writing packtwin Zarr stores, with one metadata policy everywhere.

Policy: zarr v3, ``consolidated=False`` on every call (stores are written incrementally by
region, so consolidated metadata would go stale), Blosc-zstd + bitshuffle compression for floats
(1.7x on real c_s vs 1.2x for the default Zstd).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import xarray as xr

from packtwin import schema
from packtwin.errors import PacktwinError

ZARR_KW = {"consolidated": False, "zarr_format": 3}


class StoreError(PacktwinError, ValueError):
    """A store cannot be opened or used; the message names the path and the problem."""


def compressors():
    import zarr

    return (zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle=zarr.codecs.BloscShuffle.bitshuffle),)


def encoding_for(ds: xr.Dataset) -> dict:
    """Encoding for the first write of a store (never pass it again when appending)."""
    enc = {}
    for name, var in ds.variables.items():
        if var.dtype.kind == "f" and var.ndim > 0:
            enc[name] = {"compressors": compressors()}
    return enc


def open_store(path: str | os.PathLike, kind: str = "truth", check: bool = True) -> xr.Dataset:
    """Open a store lazily; raise StoreError naming the path if it is missing or off-schema."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"store {str(p)!r} does not exist")
    try:
        ds = xr.open_zarr(p, **{"consolidated": False}, chunks={})
    except Exception as exc:  # zarr raises several types for "not a store"
        raise StoreError(f"store {str(p)!r} cannot be opened as a Zarr store: {exc}") from exc
    if check:
        problems = schema.validate(ds, kind=kind)
        if problems:
            raise schema.SchemaError(problems, source=f"store {str(p)!r}")
    return ds


def create_store(path: str | os.PathLike, template: xr.Dataset) -> None:
    """Write a template's metadata (no data) so later region writes can fill it."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store path {str(p)!r} is not writable: {exc}") from exc
    if not os.access(p.parent, os.W_OK):
        raise StoreError(f"store path {str(p)!r} is not writable (no write permission on "
                         f"{str(p.parent)!r})")
    template.to_zarr(p, mode="w", compute=False, encoding=encoding_for(template), **ZARR_KW)


def write_region(path: str | os.PathLike, ds: xr.Dataset, region: Mapping[str, slice]) -> None:
    """Write ``ds`` into an existing store at ``region`` (variables lacking a region dim dropped)."""
    dims = set(region)
    drop = [n for n, v in ds.variables.items() if not dims.issubset(v.dims)]
    ds.drop_vars(drop).to_zarr(path, mode="r+", region=dict(region), **ZARR_KW)


def read_attrs(path: str | os.PathLike) -> dict:
    import zarr

    return dict(zarr.open_group(str(path), mode="r").attrs)


def update_attrs(path: str | os.PathLike, **attrs) -> None:
    """Update store-level attrs; dicts/lists are stored as JSON strings (xarray round-trips them)."""
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    g.attrs.update({k: (json.dumps(v) if isinstance(v, (dict, list)) else v)
                    for k, v in attrs.items()})


def json_attr(ds_or_attrs, key: str, default=None):
    """Decode a JSON-string attribute written by update_attrs/template."""
    attrs = ds_or_attrs.attrs if hasattr(ds_or_attrs, "attrs") else ds_or_attrs
    val = attrs.get(key, default)
    if isinstance(val, str):
        try:
            return json.loads(val)
        except json.JSONDecodeError:
            return val
    return val
