"""The check-up pulse's film gain on several meshes and temperatures, in PyBaMM (issue #10).

    python scripts/diag_pulse_gain.py --out reports/diag_pulse_gain.json

The nominal cell of a generator config (default configs/generate/life-long.yaml: OKane2022, the
generator's options and overrides, its check-up pulse) through ``packtwin.sim.pulse_gain``: the rise of the 0.1 s 1C pulse for 20 nm more
SEI over kappa x 20 nm, at 25 and 45 degC, on the life presets' 8 radial points (uniform and
surface-refined), 30 surface-refined radial points, and the twin's own mesh (20/6/12 x 30). Shows
the gain is the cell's and its temperature's, not the mesh's. ~1-2 CPU-minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXP = {"type": "exponential", "side": "right"}
MESHES = {
    "life_8_uniform": ({"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}, {}),
    "life_8_refined": ({"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}, {"r_n": EXP, "r_p": EXP}),
    "life_x_30_refined": ({"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 30, "r_p": 30},
                          {"r_n": EXP, "r_p": EXP}),
    "twin_gain_mesh": (None, None),
}


def main(argv: list[str] | None = None) -> int:
    from packtwin.physics.life_state import life_model
    from packtwin.sim import pulse_gain as pg
    from packtwin.sim.config import to_dict
    from packtwin.sim.generate import parse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="configs/generate/life-long.yaml",
                   help="the generator config whose pulse protocol and nominal cell are used")
    p.add_argument("--temperatures-c", type=float, nargs="+", default=[25.0, 45.0])
    args = p.parse_args(argv)
    t0 = time.process_time()
    cfg, _ = parse(["--config", args.config])
    protocol, spec = pg.of_generator_config(to_dict(cfg), args.config)
    kappa = life_model().kappa
    rows = []
    for T_c in args.temperatures_c:
        for name, (var_pts, submesh) in MESHES.items():
            r0, r1 = (pg.pulse_resistance(273.15 + T_c, L, protocol, spec, var_pts, submesh)
                      for L in (pg.BASE_SEI_M, pg.BASE_SEI_M + pg.FILM_STEP_M))
            gain = (r1 - r0) / (kappa * pg.FILM_STEP_M)
            rows.append({"temperature_c": T_c, "mesh": name, "gain": round(gain, 5),
                         "resistance_mohm": round(1e3 * r0, 4)})
            print(f"{T_c:g} C {name}: gain {gain:.4f} (resistance {1e3 * r0:.3f} mOhm)", flush=True)
    out = {"command": "scripts/diag_pulse_gain.py " + " ".join(argv or sys.argv[1:]),
           "config": args.config, "protocol": vars(protocol), "kappa_ohm_per_m": kappa,
           "twin_gain_mesh": {"var_pts": pg.GAIN_VAR_PTS, "submesh": pg.GAIN_SUBMESH},
           "rows": rows, "cpu_s": round(time.process_time() - t0, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
