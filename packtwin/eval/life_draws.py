"""Life figures over several generated packs: one life report per cell draw, pooled.

A life report (:func:`packtwin.eval.life_evaluate.evaluate`, ``life_report.json``) judges one
generated pack; its data-only rows spread over training seeds, its physics rows are
deterministic. What issue 10 asks for is the spread over packs: the generation seed draws other
cells (their SEI rates, capacities, resistances). :func:`pool` puts one report per generation
seed side by side: per split x estimator x metric the mean over draws and the sample std, and
per split how many draws met each target and beat both baselines.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from packtwin.eval.life_report import COLUMNS

METRICS = tuple(k for k, _ in COLUMNS) + ("sei_growth_nm",)


def pool(reports: Mapping[int, dict], where: Mapping[int, str] | None = None) -> dict:
    """{generation seed: life report} -> pooled summary (JSON-able).

    Raises ValueError when the reports do not judge the same splits and estimators (a draw
    evaluated with another config is not the same figure), naming the seed and its source.
    """
    if not reports:
        raise ValueError("life_draws.pool: no life reports given")
    where = dict(where or {})
    first_seed, first = next(iter(reports.items()))
    splits = list(first["splits"])
    for seed, rep in reports.items():
        src = where.get(seed, f"generation seed {seed}")
        if list(rep["splits"]) != splits:
            raise ValueError(f"{src}: splits {list(rep['splits'])} differ from "
                             f"{where.get(first_seed, first_seed)}'s {splits}: evaluate every "
                             f"draw with the same config")
        for name in splits:
            a, b = list(first["splits"][name]["estimators"]), list(rep["splits"][name]["estimators"])
            if a != b:
                raise ValueError(f"{src}: split {name!r} has estimators {b}, expected {a}")
    out: dict = {"seeds": [int(s) for s in reports], "sources": {str(k): where.get(k, "")
                                                                 for k in reports},
                 "seed_meaning": "generation seed (cell-to-cell draw); std = sample std over "
                                 "draws of each draw's value (a seeded estimator's: its mean "
                                 "over training seeds)",
                 "targets": first.get("targets", {}), "splits": {}}
    for name in splits:
        rows = {}
        for est in first["splits"][name]["estimators"]:
            vals = {m: [float(r["splits"][name]["estimators"][est]["mean"][m])
                        for r in reports.values()] for m in METRICS}
            rows[est] = {m: {"mean": float(np.mean(v)),
                             "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                             "n": len(v), "per_draw": v} for m, v in vals.items()}
        targets = first.get("targets", {})
        meets = _draws_where(reports, name, "twin_meets_targets", targets)
        better = _draws_where(reports, name, "twin_better_than_baselines", targets)
        out["splits"][name] = {"holds_out": first["splits"][name].get("holds_out", ""),
                               "estimators": rows, "draws_twin_meets_target": meets,
                               "draws_twin_better_than_baselines": better}
    return out


def _draws_where(reports: Mapping[int, dict], split: str, flag: str, targets: dict
                 ) -> dict[str, int]:
    """Per target metric: how many draws' reports set ``flag`` for it on ``split``."""
    return {m: sum(bool(r["splits"][split].get(flag, {}).get(m, False)) for r in reports.values())
            for m in targets}


def markdown(pooled: dict, title: str = "") -> str:
    """One table of every split x estimator, mean ± sample std over the draws (n), then per
    split how many draws met each target / beat the baselines."""
    n = len(pooled["seeds"])
    lines = [title or "# The life twin over cell draws", "",
             f"Generation seeds {pooled['seeds']} ({n} draws); {pooled['seed_meaning']}.", "",
             "| split | estimator | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name, split in pooled["splits"].items():
        for est, row in split["estimators"].items():
            cells = []
            for key, _ in COLUMNS:
                r = row[key]
                cells.append(f"{r['mean']:.3g}" + (f" ± {r['std']:.2g}" if r["std"] is not None
                                                   else "") + f" (n={r['n']})")
            lines.append(f"| {name} | {est} | " + " | ".join(cells) + " |")
    lines += ["", "| split | holds out | draws where the twin meets the target | draws where it "
              "beats both baselines |", "|---|---|---|---|"]
    for name, split in pooled["splits"].items():
        tgt = ", ".join(f"{k} {v}/{n}" for k, v in split["draws_twin_meets_target"].items())
        bet = ", ".join(f"{k} {v}/{n}"
                        for k, v in split["draws_twin_better_than_baselines"].items())
        lines.append(f"| {name} | {split['holds_out']} | {tgt} | {bet} |")
    return "\n".join(lines) + "\n"
