"""Markdown of a life report (:func:`packtwin.eval.life_evaluate.evaluate`): one table of every
split x estimator, deterministic estimators as one value, seeded ones as mean +- std."""

from __future__ import annotations

TITLE = "# packtwin life evaluation report"
COLUMNS = (("sei_mae_nm", "SEI MAE [nm]"), ("sei_mae_pct_of_growth", "SEI MAE [% of growth]"),
           ("lli_mae_points", "LLI MAE [points]"), ("capacity_mae_pct", "capacity MAE [%]"))
DESCRIPTIONS = {
    "twin": "physics life twin (packtwin.physics.life_pack), corrected by every cycle",
    "twin_forecast": "the same twin corrected only up to upto_cycle, then carried by its law",
    "sqrt_fit": "a + b sqrt(cycle) per run, fitted on that run's own truth of cycles <= "
                "upto_cycle",
    "data_only": "MLP on the twin's measured per-cycle inputs (packtwin.eval.life_data_only), "
                 "no growth law",
}


def _cell(est: dict, key: str) -> str:
    if est["deterministic"]:
        return f"{est['mean'][key]:.3g}"
    return f"{est['mean'][key]:.3g} +- {est['std'][key]:.2g}"


def markdown(rep: dict) -> str:
    cal = rep["calibration"]
    lines = [TITLE, ""]
    if rep.get("note"):
        lines += [f"> {rep['note']}", ""]
    lines += [f"Store `{rep['store']}`. Calibration (every estimator): scenarios "
              f"{cal['scenarios']}, cells {cal['cells']}, cycles <= {cal['upto_cycle']} "
              f"(truth read there only); every split is judged on its cycles > "
              f"{cal['upto_cycle']}. Regular cycles only for capacity (check-ups excluded).", ""]
    lines += [f"- `{k}`: {v}" + ("" if k == "data_only" else " (deterministic)")
              + (f"; seeds {cal['data_only']['seeds']}, mean +- std over seeds"
                 if k == "data_only" else "") for k, v in DESCRIPTIONS.items()]
    if cal.get("cell_rates"):
        lines += ["", f"The twin and its forecast start each calibration cell "
                      f"{sorted(int(c) for c in cal['cell_rates'])} from its own SEI rate, fitted "
                      f"on its truth SEI of cycles <= {cal['upto_cycle']}, in every scenario (a "
                      f"store's cell is one physical cell); every other cell from the nominal "
                      f"rate."]
    pulses = cal.get("pulses")
    if pulses is not None:
        lines += ["", "Check-up pulses (`checkup_pulse_resistance`): " + (
            "read by the twin and its forecast (the film's rise corrects each cell's SEI rate)"
            if pulses["read"] else "in the store, not read (`life.use_pulse: false`)"
            if pulses["in_store"] else "none in the store") + "."]
        gains = pulses.get("film_gain")
        if pulses["read"] and gains:
            flat = sorted({round(g, 4) for row in gains["per_run"] for g in row})
            lines[-1] += (f" Each pulse's rise is read as gain x kappa x the SEI grown, gain "
                          f"{gains['setting']!r}: {', '.join(f'{g:g}' for g in flat)} over the "
                          f"runs (`packtwin/sim/pulse_gain.py`).")
    lines += [""] + [f"- {c}" for c in rep.get("coverage", [])]
    header = ["split", "holds out", "runs", "cycles", "estimator", *(h for _, h in COLUMNS)]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, sp in rep["splits"].items():
        for i, (est_name, est) in enumerate(sp["estimators"].items()):
            first = [name, sp["holds_out"], str(sp["runs"]),
                     f"{sp['cycles'][0]}-{sp['cycles'][1]}"] if i == 0 else [""] * 4
            lines.append("| " + " | ".join([*first, est_name,
                                            *(_cell(est, k) for k, _ in COLUMNS)]) + " |")
    if rep.get("plating"):
        lines += plating_table(rep)
    lines += ["", "Targets (issue 10): " + ", ".join(f"{k} <= {v}" for k, v in
                                                     rep["targets"].items()), ""]
    lines += ["| split | twin meets target | twin better than sqrt_fit and data_only |",
              "|---|---|---|"]
    for name, sp in rep["splits"].items():
        met = ", ".join(k for k, ok in sp["twin_meets_targets"].items() if ok) or "none"
        better = ", ".join(k for k, ok in sp["twin_better_than_baselines"].items() if ok) or "none"
        lines.append(f"| {name} | {met} | {better} |")
    return "\n".join(lines) + "\n"


PLATING_COLUMNS = (("precision", "precision"), ("recall", "recall"),
                   ("f1", "event F1 (tp/fp/fn/tn)"),
                   ("plated_lithium_mae", "plated Li MAE [mol/m3]"),
                   ("plated_lithium_true_mean", "plated Li true mean [mol/m3]"))


def _plating_cell(row: dict | None, key: str) -> str:
    if row is None:
        return "n/a"  # the estimator has no plating estimate
    text = f"{row[key]:.3g}"
    if key == "f1":
        text += " (" + "/".join(str(int(row[k])) for k in ("tp", "fp", "fn", "tn")) + ")"
    return text


def plating_table(rep: dict) -> list[str]:
    """Plating per split x estimator (events pooled over the split's judged cycles; F1 with
    tp/fp/fn/tn), "n/a" for an estimator without a plating estimate."""
    pl = rep["plating"]
    lines = ["", f"Plating (core parameters: {pl['params']}): events per cycle against PyBaMM's "
                 f"(margin below 0 V), pooled over each split's judged cycles; the twin's LLI "
                 f"includes its estimated lithium still plated at each cycle's end.", ""]
    every = int(pl.get("every", 1))
    if every > 1:
        lines[-1:-1] = ["", f"The plating core ran on every {every}th cycle only (1, {1 + every}, "
                            f"... and each run's last): events are scored on those cycles, the "
                            f"plated lithium of the others is interpolated between them."]
    if not pl.get("events_scored", True):
        lines[-1:-1] = ["", "The store holds no per-cycle plating events (written before they "
                            "were added): events are not scored (counts 0, F1 nan); the plated "
                            "lithium is."]
    header = ["split", "estimator", *(h for _, h in PLATING_COLUMNS)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, sp in rep["splits"].items():
        for i, (est_name, row) in enumerate(sp["plating"].items()):
            lines.append("| " + " | ".join([name if i == 0 else "", est_name,
                                            *(_plating_cell(row, k) for k, _ in PLATING_COLUMNS)])
                         + " |")
    return lines
