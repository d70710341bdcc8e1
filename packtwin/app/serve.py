"""``packtwin app``: serve the pack explorer on 127.0.0.1 and print its URL."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

ADDRESS = "127.0.0.1"  # loopback only: the app reads local files and has no authentication


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="packtwin app", description="Serve the pack explorer "
                                "(per-cell heatmaps, pack SEI spread, twin vs truth or estimates with "
                                "their bands, pack summary) on 127.0.0.1.")
    p.add_argument("--store", required=True,
                   help="truth store written by 'packtwin generate', or a measured store written "
                        "by 'packtwin ingest' (no truth: hidden states come from --estimates)")
    p.add_argument("--predictions", nargs="*", default=[], metavar="PATH",
                   help="prediction stores written by 'packtwin predict' (physics and/or data_only)")
    p.add_argument("--estimates", nargs="*", default=[], metavar="PATH",
                   help="estimate stores written by 'packtwin estimate' on this store (shown with "
                        "their uncertainty bands, mean +- k std)")
    p.add_argument("--checkpoint", default=None, help="a trained twin to run live on the selection")
    p.add_argument("--port", type=int, default=5006, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=False,
                   help="open a browser tab")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def twin_functions() -> tuple[Callable, Callable]:
    """(load, predict) of the project's twin, for ``build_app(live_load=, live_predict=)``.

    The only place the app reaches the model code, and only when a checkpoint is given; if it
    cannot be imported, loading fails with a message the page shows (the truth stays usable).
    """
    try:
        from packtwin.eval.predict import predict_dataset
        from packtwin.model.checkpoint import load_twin
    except ImportError as exc:
        why = (f"the live twin needs packtwin.model.checkpoint.load_twin and "
               f"packtwin.eval.predict.predict_dataset, which cannot be imported: {exc}")

        def unavailable(*_, **__):
            raise ImportError(why)

        return unavailable, unavailable

    def load(checkpoint):
        return load_twin(checkpoint).module

    return load, predict_dataset


def build_page(args: argparse.Namespace):
    """The explorer for parsed arguments, with the live twin injected when a checkpoint is given."""
    from packtwin.app.layout import build_app

    load, predict = twin_functions() if args.checkpoint else (None, None)
    return build_app(args.store, args.predictions, args.checkpoint, live_load=load,
                     live_predict=predict, estimates=args.estimates)


def make_page(args: argparse.Namespace):
    """A fresh page per browser session (Panel calls this for each connection)."""
    return build_page(args).template()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


def serve(make_page: Callable[[], object], port: int, show: bool, title: str,
          banner: str) -> int:
    """Serve ``make_page`` (called once per browser session) on 127.0.0.1 until Ctrl+C; prints
    ``banner`` and the URL. ``port`` 0: any free port."""
    import panel as pn

    port = port or free_port()  # Bokeh's origin allow-list needs the port before start
    server = pn.serve({"/": make_page}, address=ADDRESS, port=port, show=False, start=False,
                      title=title,
                      # An explicit allow-list: only pages served from this loopback port.
                      websocket_origin=[f"{ADDRESS}:{port}", f"localhost:{port}"])
    server.start()
    url = f"http://{ADDRESS}:{server.port}/"
    print(f"{banner} at {url} (Ctrl+C to stop)", flush=True)
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from packtwin.app.sources import open_truth

    _, error = open_truth(args.store)
    if error:  # the page shows it too; say it where the user typed the command
        print(f"packtwin app: {error}", file=sys.stderr)
    return serve(lambda: make_page(args), args.port, args.show, "packtwin pack explorer",
                 f"packtwin app: serving {args.store}")


if __name__ == "__main__":
    sys.exit(main())
