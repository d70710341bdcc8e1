"""What moves a check-up pulse's resistance besides the SEI film, in PyBaMM (issue #10). Writes JSON.

    python scripts/diag_pulse_state.py --out reports/diag_pulse_state.json

The generator's options and coarse life mesh (as ``tests/unit/test_pulse_film.py``), OKane2022,
one cell: a C/5 discharge for 5 minutes, then a 1C step read after ``--pulse-s`` (0.1 s, the
presets'), resistance = voltage drop over current step, both at their instants (as the generator
reads it). Each row changes one thing against the base (25 degC, the stoichiometries PyBaMM gives
45 % state of charge, 5 nm SEI, no plated lithium):

- ``temperature``: +0.5 K (what a thermocouple's reading would have to explain);
- ``plated_lithium``: reversibly plated lithium present at the pulse (OKane2022's partially
  reversible plating; a 25 degC or 2C cell carries some into its check-ups);
- ``negative_stoichiometry``: the negative electrode's lithium lowered at a fixed positive one
  (what lost lithium does to the pulse's state: the check-up discharges a fixed charge from the top
  of charge, which the positive electrode's voltage sets), at 25 and 45 degC;
- ``film``: 20 nm more SEI, for scale (kappa x 20 nm).

``--scan STEP SPAN`` (with ``--only-stoichiometry``) replaces the stoichiometry rows by a fine scan
at 25 degC and the same curve averaged over pulses spread across windows of the stoichiometry
(several pulses per check-up; key ``scan``; ~3 CPU-minutes for 51 points).

About 1 CPU-minute. Stop 43's and 44's findings are in the README ("A pulse that sees the film").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

VAR_PTS = {"x_n": 5, "x_s": 3, "x_p": 5, "r_n": 8, "r_p": 8}


def pulse_resistance(changes: dict, pulse_s: float, var_pts: dict | None = None,
                     pv=None, submesh: dict | None = None) -> float:
    """Resistance [Ohm] of a 1C step held ``pulse_s`` after 5 minutes at C/5 (``pv``: the
    parameter values to start from, OKane2022's by default; ``submesh``: a generator config's
    ``model.submesh``), the generator's model options."""
    import pybamm

    from packtwin.sim.config import ModelConfig
    from packtwin.sim.pulse_gain import step_resistance

    pv = pybamm.ParameterValues("OKane2022") if pv is None else pv.copy()
    pv.update({"Contact resistance [Ohm]": 0.005, "Initial SEI thickness [m]": 5e-9})
    pv.update(changes)
    model = pybamm.lithium_ion.DFN(ModelConfig().options)
    return step_resistance(model, pv, 0.2, 300.0, 1.0, pulse_s, var_pts or VAR_PTS, submesh)


def _scan(resistance, step: float, span: float, kappa: float) -> dict:
    """Resistance over a fine grid of negative-stoichiometry shifts, and the same curve averaged
    over pulses spread evenly across windows of the negative stoichiometry (what several pulses
    through a check-up's discharge would read): the peak-to-peak of each curve, in uOhm and nm of
    film, over the shifts where the whole window fits."""
    import numpy as np

    n = int(round(span / step)) + 1
    shifts = -step * np.arange(n)
    r = np.array([resistance(float(d)) for d in shifts])
    out = {"step": step, "shifts": shifts.round(6).tolist(), "resistance_uohm": (1e6 * r).round(3).tolist(),
           "windows": []}
    for width in (0.0, 0.005, 0.01, 0.02, 0.03):
        k = int(round(width / step)) + 1
        if k > n // 2:
            continue
        avg = np.convolve(r, np.ones(k) / k, mode="valid")
        p2p = float(avg.max() - avg.min())
        # the drift a cell sees as lithium is lost: the worst change of the averaged reading over
        # a 1 % shift of the negative stoichiometry (about what 1000 cycles lose here)
        lag = int(round(0.01 / step))
        worst = float(np.abs(avg[lag:] - avg[:-lag]).max()) if len(avg) > lag else float("nan")
        out["windows"].append({"window": width, "pulses": k, "peak_to_peak_uohm": round(1e6 * p2p, 2),
                               "peak_to_peak_nm": round(p2p / kappa * 1e9, 3),
                               "worst_change_over_1pct_uohm": round(1e6 * worst, 2),
                               "worst_change_over_1pct_nm": round(worst / kappa * 1e9, 3)})
        print(f"window {width:.3f} ({k} pulses): peak-to-peak {1e6 * p2p:.1f} uOhm "
              f"({p2p / kappa * 1e9:.2f} nm), worst 1 % change {1e6 * worst:.1f} uOhm")
    return out


def main(argv: list[str] | None = None) -> int:
    import pybamm

    from packtwin.physics.life_state import life_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON report")
    p.add_argument("--pulse-s", type=float, default=0.1)
    p.add_argument("--soc", type=float, default=0.45,
                   help="state of charge at the pulse (0.45: the presets' half of the nominal "
                        "capacity discharged from the top of charge, less the C/5 rest)")
    p.add_argument("--only-stoichiometry", action="store_true",
                   help="the negative_stoichiometry rows alone (a scan over --soc)")
    p.add_argument("--scan", type=float, nargs=2, metavar=("STEP", "SPAN"), default=None,
                   help="a fine scan of the negative stoichiometry from 0 down to -SPAN in STEPs "
                        "(25 degC only), and what averaging pulses spread over a window of the "
                        "check-up's discharge leaves of its structure (key 'scan')")
    p.add_argument("--r-points", type=int, default=None,
                   help="radial points of both particles (default: the life mesh's 8)")
    args = p.parse_args(argv)
    var_pts = dict(VAR_PTS, **({"r_n": args.r_points, "r_p": args.r_points}
                               if args.r_points else {}))
    t0 = time.process_time()
    pv = pybamm.ParameterValues("OKane2022")
    cn = pv["Maximum concentration in negative electrode [mol.m-3]"]
    cp = pv["Maximum concentration in positive electrode [mol.m-3]"]
    x0, x100, y100, y0 = pybamm.lithium_ion.get_min_max_stoichiometries(pv)
    soc = args.soc
    theta_n, theta_p = x0 + soc * (x100 - x0), y0 - soc * (y0 - y100)

    def at(T_c: float = 25.0, d_theta_n: float = 0.0, **extra) -> dict:
        ch = {"Ambient temperature [K]": 273.15 + T_c, "Initial temperature [K]": 273.15 + T_c,
              "Initial concentration in negative electrode [mol.m-3]": (theta_n + d_theta_n) * cn,
              "Initial concentration in positive electrode [mol.m-3]": theta_p * cp}
        ch.update(extra)
        return ch

    kappa = life_model().kappa
    base = {T: pulse_resistance(at(T), args.pulse_s, var_pts) for T in (25.0, 45.0)}
    rows = []

    def row(kind: str, value, T_c: float, changes: dict) -> None:
        r = pulse_resistance(changes, args.pulse_s, var_pts)
        d = r - base[T_c]
        rows.append({"change": kind, "value": value, "ambient_c": T_c,
                     "resistance_mohm": round(1e3 * r, 4), "shift_uohm": round(1e6 * d, 2),
                     "film_nm_equivalent": round(d / kappa * 1e9, 3)})
        print(f"{kind} {value} at {T_c:g} C: {1e6 * d:+.1f} uOhm "
              f"({d / kappa * 1e9:+.2f} nm of film)")

    if not args.only_stoichiometry:
        row("temperature_k", 0.5, 25.0, at(25.5))
        for pl in (0.5, 2.5, 10.0):
            row("plated_lithium_mol_m3", pl, 25.0,
                at(**{"Initial plated lithium concentration [mol.m-3]": pl}))
    scan = None
    if args.scan:
        scan = _scan(lambda d: pulse_resistance(at(25.0, d), args.pulse_s, var_pts), *args.scan,
                     kappa)
    else:
        for T in (25.0, 45.0):
            for d in (-0.0025, -0.005, -0.0075, -0.01, -0.015, -0.02):
                row("negative_stoichiometry", d, T, at(T, d))
    if not args.only_stoichiometry:
        row("sei_nm", 20.0, 25.0, at(**{"Initial SEI thickness [m]": 25e-9}))
    out = {"command": "scripts/diag_pulse_state.py " + " ".join(argv or sys.argv[1:]),
           "pulse_s": args.pulse_s, "var_pts": var_pts, "base": {"soc": soc, "theta_n": theta_n, "theta_p": theta_p,
                                             "resistance_mohm": {f"{T:g}C": 1e3 * r
                                                                 for T, r in base.items()}},
           "kappa_ohm_per_m": kappa, "rows": rows, "scan": scan, "cpu_s": time.process_time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
