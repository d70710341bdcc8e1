"""The pack explorer as a ``panel serve`` app (``packtwin app`` serves the same page).

    panel serve apps/pack_explorer.py --address 127.0.0.1 --allow-websocket-origin 127.0.0.1:5006 \\
        --args --store data/demo.zarr --predictions runs/demo/physics.zarr runs/demo/data_only.zarr

Everything is built per browser session, only when served: importing this file reads no data.
"""

import sys

import panel as pn

from packtwin.app.layout import build_app
from packtwin.app.serve import parse_args

if pn.state.served:
    args = parse_args(sys.argv[1:])
    build_app(args.store, args.predictions, args.checkpoint).template().servable(
        title="packtwin pack explorer")
