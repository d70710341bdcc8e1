"""The observers over three cell draws: the held-out check pack generated with seeds 12, 13, 14.

    python scripts/observer_seeds.py                 # generate what is missing, evaluate, pool
    python scripts/observer_seeds.py --pool-only     # only pool the reports already there
    python scripts/observer_seeds.py --seeds 15 16 17 --out reports/observer_seeds_15-17
    python scripts/observer_seeds.py --seeds 15 16 17 --starts loaded --prior loaded \
        --out reports/observer_seeds_15-17_prior-loaded   # the start without the window's choice

For every generation seed: ``packtwin generate --config configs/generate/observer-check.yaml
--seed S`` (seed 12 is the config's own store, data/observer-check.zarr; the others go to
data/observer-check-sS.zarr), then ``packtwin evaluate`` with configs/experiments/observer-check.yaml
(rested start) and observer-check_loaded.yaml (600 s into every cycle, under load) on that store
(outputs reports/observer-check[_loaded] for seed 12, reports/observer-check-sS[_loaded] else;
``--prior`` other than "loaded", the start prior those reports were made with before stop 22,
adds ``-<prior>`` to the loaded start's output, e.g. reports/observer-check-s15_loaded-loaded_window;
a rested start reads its sample at rest whatever the prior, so its output is shared;
``--identified``: the subspace filter with parameters identified from each cell's own V/I/T
instead of the oracle observers, outputs ending in ``-identified``; ``--identify-window-s W``
other than evaluate's default: fitted on W s of the identification cycle, outputs ending in
``-identified-wW``; ``--prior-offset X``: evaluate's ``observer_prior_offset`` (a deliberate
X-of-the-window SOC error in the start prior), outputs ending in ``-offX``; ``--subspace JSON``:
evaluate's ``observer_subspace`` (SubspaceConfig overrides of the subspace filters, e.g.
``'{"reprior_soc": 0.1}'``), outputs ending in ``-<key><value>`` per key, e.g. ``-reprior_soc0.1``;
``--core JSON``: evaluate's ``observer_core`` (CoreConfig overrides of the observers' core, e.g.
``'{"plating": true}'``), outputs ending in ``-core`` and the same per-key suffix, e.g.
``-core-platingTrue``; ``--identify JSON``: evaluate's ``observer_identify`` (IdentifyConfig
overrides, e.g. ``'{"iterations": 40}'``), outputs ending in ``-id`` and the per-key suffix;
``--tag T``: outputs ending in ``-T``, a rerun next to older reports).
Both steps resume: generate skips a complete store's scenarios, and a report whose
metrics.zarr exists is not redone. Then the pooled figures,
mean ± sample std over the draws: reports/observer_seeds.{md,json}.

Cost on the 2-core development machine: ~5.5 CPU-min per generated pack, ~10-15 CPU-min per
evaluate (figures in the README). Nothing in the observers was chosen on these packs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import xarray as xr

from packtwin.cli import main as packtwin
from packtwin.eval.draws import draws_markdown, draws_summary, stack_draws
from packtwin.eval.observer_identify import window_arg

GENERATE = "configs/generate/observer-check.yaml"
STARTS = {"rested": "configs/experiments/observer-check.yaml",
          "loaded": "configs/experiments/observer-check_loaded.yaml"}
OWN_SEED = 12   # the seed in GENERATE: its store and reports keep the configs' own names


def store_for(seed: int) -> str:
    return "data/observer-check.zarr" if seed == OWN_SEED else f"data/observer-check-s{seed}.zarr"


# the start prior the reports without a suffix were made with (evaluate's default before stop 22)
PLAIN_PRIOR = "loaded"


# --identified: the subspace filter with each cell's parameters identified from its own V/I/T
# (no truth table) instead of the oracle observers
IDENTIFIED = ["subspace_identified"]


def subspace_tail(subspace: dict | None) -> str:
    """Output suffix of SubspaceConfig overrides: ``-<key><value>`` per key, in key order."""
    return "".join(f"-{k}{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool)
                   else f"-{k}{v}"
                   for k, v in sorted((subspace or {}).items()))


def output_for(seed: int, start: str, prior: str = PLAIN_PRIOR, identified: bool = False,
               window_s: float | None = None, offset: float = 0.0,
               subspace: dict | None = None, observers: list[str] | None = None,
               core: dict | None = None, tag: str = "", identify: dict | None = None) -> str:
    base = "reports/observer-check" if seed == OWN_SEED else f"reports/observer-check-s{seed}"
    tail = ("-identified" if identified else "") + (
        f"-w{window_s:g}" if identified and window_s is not None else "") + (
        f"-off{offset:g}" if offset else "") + subspace_tail(subspace) + (
        "-core" + subspace_tail(core) if core else "") + (
        "-id" + subspace_tail(identify) if identify else "") + (
        "-only-" + "-".join(observers) if observers else "") + (f"-{tag}" if tag else "")
    if start == "rested":
        return base + tail
    return f"{base}_loaded" + ("" if prior == PLAIN_PRIOR else f"-{prior}") + tail


def run(seeds: list[int], starts: list[str], prior: str, identified: bool = False,
        window_s: float | None = None, offset: float = 0.0,
        subspace: dict | None = None, observers: list[str] | None = None,
        core: dict | None = None, tag: str = "", identify: dict | None = None) -> None:
    for seed in seeds:
        store = store_for(seed)
        # always called: generate resumes a partial store and skips a complete one (~1 s)
        rc = packtwin(["generate", "--config", GENERATE, "--seed", str(seed), "--store", store,
                       "--quiet"])
        if rc:
            raise SystemExit(f"generate seed {seed} -> {store} failed (exit {rc})")
        for start in starts:
            out = output_for(seed, start, prior, identified, window_s, offset, subspace,
                             observers, core, tag, identify)
            if Path(out, "metrics.zarr").exists():
                continue
            which = (["--observers", json.dumps(IDENTIFIED if identified else observers)]
                     if identified or observers else [])
            if identified and window_s is not None:
                which += ["--observer_identify_window_s", window_arg(window_s)]
            if offset:
                which += ["--observer_prior_offset", f"{offset:g}"]
            if subspace:
                which += ["--observer_subspace", json.dumps(subspace)]
            if core:
                which += ["--observer_core", json.dumps(core)]
            if identify:
                which += ["--observer_identify", json.dumps(identify)]
            params = "identified parameters" if identified else "oracle parameters"
            rc = packtwin(["evaluate", "--config", STARTS[start], "--store", store,
                           "--output", out, "--observer_prior", prior, *which, "--note",
                           f"observers only, {params}"
                           + (f" (identification window {window_s:g} s)"
                              if identified and window_s is not None else "")
                           + (f"; start prior {offset:g} of the SOC window off on purpose"
                              if offset else "")
                           + (f"; subspace filter {json.dumps(subspace)}" if subspace else "")
                           + (f"; observers' core {json.dumps(core)}" if core else "")
                           + (f"; identification {json.dumps(identify)}" if identify else "")
                           + f"; {start} start, prior {prior}; "
                           f"observer-check pack generated with seed {seed} (converged mesh)"])
            if rc:
                raise SystemExit(f"evaluate seed {seed} {start} -> {out} failed (exit {rc})")


def pool(seeds: list[int], starts: list[str], out: Path, prior: str = PLAIN_PRIOR,
         identified: bool = False, window_s: float | None = None, offset: float = 0.0,
         subspace: dict | None = None, observers: list[str] | None = None,
         core: dict | None = None, tag: str = "", identify: dict | None = None) -> dict:
    summary: dict = {"seeds": seeds, "generate": GENERATE, "prior": prior,
                     "parameters": "identified" if identified else "oracle",
                     "identify_window_s": window_s, "prior_offset": offset,
                     "subspace": subspace or {}, "observers": observers, "core": core or {},
                     "identify": identify or {}, "starts": {}}
    md = []
    for start in starts:
        paths = {s: str(Path(output_for(s, start, prior, identified, window_s, offset,
                                        subspace, observers, core, tag, identify),
                               "metrics.zarr"))
                 for s in seeds}
        for s, p in paths.items():
            if not Path(p).exists():
                raise SystemExit(f"{p} missing (seed {s}, {start} start): run without --pool-only")
        stores = {s: xr.open_zarr(p, consolidated=False).load() for s, p in paths.items()}
        ds = stack_draws(stores, where=paths)
        params = (", identified parameters" if identified else "") + (
            f" (window {window_s:g} s)" if identified and window_s is not None else "") + (
            f", start prior {offset:g} of the SOC window off" if offset else "") + (
            f", subspace filter {json.dumps(subspace)}" if subspace else "") + (
            f", observers' core {json.dumps(core)}" if core else "") + (
            f", identification {json.dumps(identify)}" if identify else "")
        md.append(draws_markdown(ds, title=f"Observers on the check pack, {start} start "
                                           f"(prior {prior}{params}), over {len(seeds)} "
                                           f"cell draws"))
        summary["starts"][start] = {"config": STARTS[start], "sources": paths, **draws_summary(ds)}
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / (out.name + ".md")).write_text("\n".join(md))
    (out.parent / (out.name + ".json")).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[12, 13, 14])
    p.add_argument("--starts", nargs="+", choices=sorted(STARTS), default=["rested", "loaded"])
    p.add_argument("--prior", default="loaded_window",
                   help="evaluate's observer_prior (default: evaluate's own default)")
    p.add_argument("--pool-only", action="store_true", help="pool existing reports only")
    p.add_argument("--identified", action="store_true",
                   help=f"observers {IDENTIFIED} (parameters identified from each cell's own "
                        "V/I/T, no truth table) instead of the config's oracle ones; outputs "
                        "end in -identified")
    p.add_argument("--identify-window-s", type=float, default=None,
                   help="with --identified: evaluate's observer_identify_window_s (default: "
                        "evaluate's own; 1e5: the whole cycle)")
    p.add_argument("--prior-offset", type=float, default=0.0,
                   help="evaluate's observer_prior_offset (e.g. 0.3: a 30-point start error)")
    p.add_argument("--subspace", type=json.loads, default=None,
                   help="evaluate's observer_subspace, JSON (SubspaceConfig overrides, e.g. "
                        "'{\"reprior_soc\": 0.1}'); outputs end in -<key><value>")
    p.add_argument("--observers", nargs="+", default=None,
                   help="evaluate's observers instead of the config's (e.g. subspace: minutes "
                        "instead of the EKF's ~10 CPU-min per evaluate); outputs end in "
                        "-only-<names>")
    p.add_argument("--core", type=json.loads, default=None,
                   help="evaluate's observer_core, JSON (CoreConfig overrides of the observers' "
                        "core, e.g. '{\"plating\": true}'); outputs end in -core-<key><value>")
    p.add_argument("--identify", type=json.loads, default=None,
                   help="with --identified: evaluate's observer_identify, JSON (IdentifyConfig "
                        "overrides, e.g. '{\"iterations\": 40}'); outputs end in "
                        "-id-<key><value>")
    p.add_argument("--tag", default="",
                   help="outputs end in -<tag>: a rerun of a configuration on later code next "
                        "to the reports already there (which resume would otherwise reuse)")
    p.add_argument("--out", default="reports/observer_seeds", help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    if args.identified and args.observers:
        p.error("--identified sets the observers itself; leave out --observers")
    if args.identify and not args.identified:
        p.error("--identify overrides the identification: give --identified too")
    if not args.pool_only:
        run(args.seeds, args.starts, args.prior, args.identified, args.identify_window_s,
            args.prior_offset, args.subspace, args.observers, args.core, args.tag, args.identify)
    pool(args.seeds, args.starts, Path(args.out), args.prior, args.identified,
         args.identify_window_s, args.prior_offset, args.subspace, args.observers, args.core,
         args.tag, args.identify)
    print(Path(args.out + ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
