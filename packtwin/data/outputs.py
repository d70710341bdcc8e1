"""Outputs that never destroy inputs or unrelated data, and are replaced whole or not at all.

Every path a packtwin command writes goes through :func:`guard` then :func:`replace`:

- ``guard`` refuses a path that is one of the command's inputs, lies inside one or contains one
  (replacing it would delete the input), an existing checkpoint, or an existing file/folder that
  packtwin did not write as this kind of output (a truth store is not a prediction store, a
  folder of someone's files is neither).
- ``replace`` writes into a temporary sibling and renames it into place only once complete; a
  folder is swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` (Linux), so a kill at any
  moment leaves either the previous output or the new one, never a mix or nothing.

Packtwin outputs carry a marker holding the kind of output: the ``packtwin_output`` attribute
of a Zarr store, a ``.packtwin-output`` file inside another folder, or a
``<file>.packtwin-output`` sibling of a file.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterable, Iterator

from packtwin.errors import PacktwinError

MARKER = ".packtwin-output"
ZARR_ATTR = "packtwin_output"
REPORT_TITLE = "# packtwin evaluation report"  # first line of packtwin.eval.report's report.md
_TMP_TAG = ".packtwin-tmp-"
_OLD_TAG = ".packtwin-old-"


class OutputError(PacktwinError, ValueError):
    """An output path would overwrite an input, a checkpoint or data packtwin did not write."""


def marker_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / MARKER if p.is_dir() else p.with_name(p.name + MARKER)


def _zarr_attrs(p: Path) -> dict | None:
    """Attributes of a Zarr v3 group at ``p`` (None: not one)."""
    try:
        return json.loads((p / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind recorded by :func:`mark` (None: not a packtwin output)."""
    p = Path(path)
    attrs = _zarr_attrs(p) if p.is_dir() else None
    if attrs is not None:  # a Zarr store: marked in its attrs (a marker file would warn on open)
        if attrs.get(ZARR_ATTR):
            return str(attrs[ZARR_ATTR])
        if "splits_resolved" in attrs:  # written before markers existed
            return "metrics"
        if "variant" in attrs and "schema_version" in attrs and "generator_config" not in attrs:
            return "prediction"
        return None
    try:
        return marker_path(p).read_text().strip() or None
    except OSError:
        if p.is_dir() and _legacy_evaluation(p):
            return "evaluation"
        return None


def _legacy_evaluation(p: Path) -> bool:
    """An evaluation folder written before markers existed (finished, partial or committed)."""
    try:
        if (p / "report.md").read_text().startswith(REPORT_TITLE):
            return True
    except OSError:
        pass
    return (p / "metrics.zarr").is_dir() or any((p / "runs").glob("*/seed*/fit_args.json")) \
        or any((p / "runs").glob("*/seed*/fit_config.json"))


def mark(path: str | os.PathLike, kind: str) -> None:
    p = Path(path)
    if p.is_dir() and _zarr_attrs(p) is not None:
        import zarr

        zarr.open_group(str(p), mode="r+").attrs[ZARR_ATTR] = kind
    else:
        marker_path(p).write_text(kind + "\n")


def is_checkpoint(path: Path) -> bool:
    """A torch checkpoint (``torch.save`` zip with a pickle and no TorchScript code)."""
    if path.suffix == ".ckpt":
        return True
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    pickled = any(n.endswith("/data.pkl") for n in names)
    scripted = any(n.endswith("/constants.pkl") or "/code/" in n for n in names)
    return pickled and not scripted


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def guard(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike | None] = (),
          what: str = "output") -> Path:
    """Check that ``path`` may be (re)written as a ``kind`` output; returns it resolved.

    Raises OutputError naming the path and the reason otherwise.
    """
    p = Path(path).expanduser().resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        q = Path(inp).expanduser().resolve()
        if _inside(p, q):
            raise OutputError(f"{what} {str(path)!r} is the input {str(inp)!r} or lies inside it; "
                              f"writing it would destroy the input: choose another path")
        if _inside(q, p):
            raise OutputError(f"{what} {str(path)!r} contains the input {str(inp)!r}; replacing it "
                              f"would delete the input: choose another path")
    if not p.exists():
        return p
    found = output_kind(p)
    if p.is_file() and is_checkpoint(p):
        raise OutputError(f"{what} {str(path)!r} is an existing checkpoint; refusing to overwrite "
                          f"it: choose another path")
    if found != kind:
        if found is None:
            what_is = "folder" if p.is_dir() else "file"
            if p.is_dir() and not any(p.iterdir()):
                return p  # an empty folder holds nothing to lose
            raise OutputError(f"{what} {str(path)!r} is an existing {what_is} that is not a packtwin "
                              f"{kind} output (no packtwin marker); refusing to replace it: choose "
                              f"another path or remove it yourself")
        raise OutputError(f"{what} {str(path)!r} holds a packtwin {found!r}, not a {kind!r}; "
                          f"refusing to replace it: choose another path")
    return p


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return rc == 0


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def recover(path: str | os.PathLike) -> None:
    """Clean what a killed :func:`replace` left next to ``path``.

    Temporary siblings of dead writers are removed; a previous output set aside by the
    two-rename fallback is put back when the new one never arrived.
    """
    p = Path(path)
    if not p.parent.is_dir():
        return
    for tag in (_OLD_TAG, _TMP_TAG):
        for q in p.parent.glob(f".{p.name}{tag}*"):
            try:  # the pid ends the name (before the marker suffix of a file's marker)
                pid = int(q.name.removesuffix(MARKER).rsplit("-", 1)[1])
            except (IndexError, ValueError):
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            if tag == _OLD_TAG and not p.exists():
                os.replace(q, p)
            else:
                _remove(q)


def temp_sibling(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(f".{p.name}{_TMP_TAG}{os.getpid()}")


@contextlib.contextmanager
def replace(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it becomes ``path``.

    The caller writes a complete file or folder at the yielded path. On an exception the
    temporary is removed and ``path`` is untouched. Call :func:`guard` first.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    recover(p)
    tmp = temp_sibling(p)
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {str(p)!r}")
        mark(tmp, kind)
        if tmp.is_dir():
            if p.exists() and _exchange(tmp, p):
                _remove(tmp)  # now the previous output
            else:
                old = p.with_name(f".{p.name}{_OLD_TAG}{os.getpid()}")
                if p.exists():
                    os.replace(p, old)  # recover() puts it back if we die before the next line
                os.replace(tmp, p)
                _remove(old)
        else:
            tmp_marker = marker_path(tmp)
            os.replace(tmp, p)  # atomic for files
            os.replace(tmp_marker, marker_path(p))
    except BaseException:
        _remove(tmp)
        marker_path(tmp).unlink(missing_ok=True)  # a file's marker sibling, if it was made
        raise


def claim_folder(path: str | os.PathLike, kind: str,
                 inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Create or reuse a working folder filled piece by piece (e.g. an evaluation's outputs).

    It must be new, empty or an earlier ``kind`` folder, and neither an input nor inside one
    (an input inside it is fine: the folder is never replaced whole). It is marked as ``kind``.
    """
    p = Path(path)
    q = p.expanduser().resolve()
    for inp in inputs:
        if inp is not None and str(inp) != "" and _inside(q, Path(inp).expanduser().resolve()):
            raise OutputError(f"output folder {str(path)!r} is the input {str(inp)!r} or lies "
                              f"inside it: choose another folder")
    guard(p, kind, (), what="output folder")
    p.mkdir(parents=True, exist_ok=True)
    mark(p, kind)
    return p


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (temporary sibling, then rename): never half a file."""
    p = Path(path)
    tmp = temp_sibling(p)
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
