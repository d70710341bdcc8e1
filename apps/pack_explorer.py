"""The pack explorer as a ``panel serve`` app (``packtwin app`` serves the same page).

    panel serve apps/pack_explorer.py --address 127.0.0.1 --allow-websocket-origin 127.0.0.1:5006 \\
        --args --store data/demo.zarr --predictions runs/demo/physics.zarr runs/demo/data_only.zarr

(a measured store from ``packtwin ingest`` with ``--estimates EST.zarr`` from ``packtwin estimate``
works the same way.)

Always give ``--address 127.0.0.1`` and an explicit ``--allow-websocket-origin``: without them
``panel serve`` listens on every interface, and the app reads local files with no authentication.
Everything is built per browser session, only when served: importing this file reads no data.
"""

import sys

import panel as pn

from packtwin.app.serve import build_page, parse_args

if pn.state.served:
    build_page(parse_args(sys.argv[1:])).template().servable(title="packtwin pack explorer")
