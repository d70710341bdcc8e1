"""Serve the pack explorer on a store (+ predictions) and save a PNG of the page.

    .venv/bin/python scripts/screenshot_app.py --store data/demo.zarr \\
        --predictions runs/demo/physics.zarr runs/demo/data_only.zarr --out docs/app.png
    .venv/bin/python scripts/screenshot_app.py --store measured.zarr --estimates est.zarr \\
        --figures 10 --out docs/app_measured.png

Uses Debian's Chromium through Playwright (never ``playwright install``) and waits until Bokeh
has drawn every plot (a bare ``chromium --screenshot`` shoots before the websocket fills them).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("PACKTWIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
FIGURES_JS = """() => window.Bokeh && Bokeh.documents.length > 0 &&
  [...Bokeh.documents[0].all_models].filter(m => m.type === 'Figure').length >= %d"""
# Every plot title naming a cell names the one just selected (the server has caught up).
CELL_TITLES_JS = """(cell) => [...Bokeh.documents[0].all_models]
  .filter(m => m.type === 'Figure' && m.title && /cell \\d+/.test(m.title.text))
  .every(m => m.title.text.match(/cell (\\d+)/)[1] === cell)"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store: str, predictions: list[str], port: int, log,
          estimates: list[str] = ()) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "packtwin", "app", "--store", store, "--port", str(port),
           "--no-show"]
    if predictions:
        cmd += ["--predictions", *predictions]
    if estimates:
        cmd += ["--estimates", *estimates]
    # Output to a file, not a pipe nobody reads: a full pipe would block the server.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"packtwin app exited with {proc.returncode}:\n{log.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit(f"packtwin app did not listen on 127.0.0.1:{port} in 60 s")
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True)
    p.add_argument("--predictions", nargs="*", default=[])
    p.add_argument("--estimates", nargs="*", default=[],
                   help="estimate stores (packtwin estimate), e.g. of a measured --store")
    p.add_argument("--out", default="docs/app.png")
    p.add_argument("--width", type=int, default=1720)
    p.add_argument("--height", type=int, default=2350)
    p.add_argument("--cell", default=None, help="label of a cell to select first, e.g. 'cell 5 (S2 P2)'")
    p.add_argument("--figures", type=int, default=8,
                   help="wait until this many plots exist (8 truth only, 12 with a twin)")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = serve(args.store, args.predictions, port, log, args.estimates)
    try:
        url = f"http://127.0.0.1:{port}/"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(url, timeout=60_000)
            page.wait_for_function(FIGURES_JS % args.figures, timeout=60_000)
            if args.cell:
                page.locator("select", has=page.locator("option", has_text=args.cell)).select_option(
                    label=args.cell)
                number = args.cell.split()[1]
                page.wait_for_function(CELL_TITLES_JS, arg=number, timeout=60_000)
            page.wait_for_timeout(1500)  # the last websocket patches and canvas paints
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.seek(0)
        server_log = log.read()
    if "Traceback" in server_log or "ERROR" in server_log:
        print(f"the server logged errors:\n{server_log}", file=sys.stderr)
        return 1
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
