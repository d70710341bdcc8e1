"""``packtwin <command> ...``: one entry point, each command a function of argv.

Commands import their module lazily so ``packtwin generate`` never loads torch/Lightning and
``packtwin fit`` never loads PyBaMM.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

from packtwin.errors import DEBUG_ENV, PacktwinError, debug_enabled, one_line

# command -> (module, function, one-line help). Lightning commands share one LightningCLI entry.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("packtwin.sim.generate", "main", "simulate a pack with PyBaMM into a Zarr store"),
    "ingest": ("packtwin.data.ingest", "main", "a measured pack log (CSV/Parquet) -> a measured store"),
    "fit": ("packtwin.train", "main", "train the twin (LightningCLI)"),
    "validate": ("packtwin.train", "main", "validate a checkpoint (LightningCLI)"),
    "test": ("packtwin.train", "main", "test a checkpoint (LightningCLI)"),
    "predict": ("packtwin.train", "main", "estimate hidden states into a Zarr store (LightningCLI)"),
    "estimate": ("packtwin.eval.estimate", "main",
                 "every cell of any pack (measured or simulated), as new cells; seed ensemble"),
    "evaluate": ("packtwin.eval.evaluate", "main", "held-out splits, ablation, baselines, report"),
    "export": ("packtwin.eval.export", "main", "export the twin for CPU deployment"),
    "replay": ("packtwin.eval.replay", "main",
               "stream a store through the streaming twin at a multiple of real time, alarms"),
    "app": ("packtwin.app.serve", "main", "serve the pack explorer on 127.0.0.1"),
    "demo": ("packtwin.demo", "main", "the README main job: generate -> train -> evaluate -> app"),
}


def usage() -> str:
    lines = ["usage: packtwin <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {helptext}" for name, (_, _, helptext) in COMMANDS.items()]
    lines += ["", "Run 'packtwin <command> --help' for a command's options.",
              f"--debug (or {DEBUG_ENV}=1) shows the traceback of an error."]
    return "\n".join(lines)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's to fix: printed as one line, no traceback."""
    import yaml

    errs: list[type[BaseException]] = [PacktwinError, FileNotFoundError, NotADirectoryError,
                                       IsADirectoryError, PermissionError, yaml.YAMLError]
    jsonargparse = sys.modules.get("jsonargparse")
    if jsonargparse is not None and hasattr(jsonargparse, "ArgumentError"):
        errs.append(jsonargparse.ArgumentError)
    return tuple(errs)


def _run(module: str, func: str, cmd: str, rest: list[str]):
    entry = getattr(importlib.import_module(module), func)
    # LightningCLI takes the subcommand itself. sys.argv is left as it is: DDP starts the other
    # ranks by re-running it, so the command line must reach them whole.
    return entry([cmd, *rest]) if module == "packtwin.train" else entry(rest)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled()
    if "--debug" in argv:
        argv.remove("--debug")
        debug = True
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"packtwin: unknown command {cmd!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[cmd]
    saved = os.environ.get(DEBUG_ENV)
    if debug:
        os.environ[DEBUG_ENV] = "1"  # commands that report their own errors re-raise them
    try:
        result = _run(module, func, cmd, rest)
    except Exception as exc:
        if debug or not isinstance(exc, user_errors()):
            raise
        print(f"packtwin {cmd}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if saved is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = saved
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
