"""A life preset's pack over several cell draws: generate, evaluate over life, pool (issue #10).

    python scripts/life_seeds.py                    # seeds 0 1 2: generate what is missing,
                                                    # evaluate, pool
    python scripts/life_seeds.py --pool-only        # only pool the reports already there
    python scripts/life_seeds.py --seeds 0 1 2 3 --out reports/life_seeds
    python scripts/life_seeds.py --preset life-long  # the 1000-cycle preset (reports/life-long_seeds)
    python scripts/life_seeds.py --preset life-long --life-set '{"use_pulse": false}' --tag nopulse
                                                    # keys merged into the experiment's `life:`
                                                    # section; reports/life-long[-sS]-nopulse,
                                                    # pooled in reports/life-long_seeds-nopulse

``--preset P`` (default life-demo) reads configs/generate/P.yaml and configs/experiments/P.yaml;
seed 0 keeps their store and output, seed S goes to data/P-sS.zarr and reports/P-sS. Below,
life-demo's names stand for any preset's.

Seed 0 is configs/generate/life-demo.yaml's own (store data/life-demo.zarr, report
reports/life-demo); seed S goes to data/life-demo-sS.zarr and reports/life-demo-sS. Each
draw: ``packtwin generate --config configs/generate/life-demo.yaml --seed S --workers W``
(resumes a partial store, skips a complete one), then ``packtwin evaluate --config
configs/experiments/life-demo.yaml`` on that store (skipped where its life_report.json exists),
then :func:`packtwin.eval.life_draws.pool`: OUT.json and OUT.md, mean ± sample std over draws.
A draw whose report exists is not evaluated again, even where its store was just (re)generated:
remove the report's folder to redo it (the committed reports/life-demo has no output marker, so
evaluate refuses to overwrite it until it is removed).

Cost on the 2-core development machine: life-demo ~19-27 min wall per draw with 2 workers (2
scenarios x 4 cells x 200 cycles, stepped coupling; figures in the README), ~4 min per evaluate;
life-long (3 scenarios x 4 cells x 1000 cycles, the pack DAE): see the README ("Life
evaluation"). Nothing in the life twin was chosen on seeds other than 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from packtwin.cli import main as packtwin
from packtwin.eval.life_draws import markdown, pool

PRESET = "life-demo"
OWN_SEED = 0  # the seed in the configs: its store and report keep the configs' own names


def configs(preset: str = PRESET) -> tuple[str, str]:
    """(generate config, experiment config) of a preset."""
    return f"configs/generate/{preset}.yaml", f"configs/experiments/{preset}.yaml"


def store_for(seed: int, preset: str = PRESET) -> str:
    return f"data/{preset}.zarr" if seed == OWN_SEED else f"data/{preset}-s{seed}.zarr"


def output_for(seed: int, preset: str = PRESET, tag: str = "") -> str:
    base = f"reports/{preset}" if seed == OWN_SEED else f"reports/{preset}-s{seed}"
    return f"{base}-{tag}" if tag else base


def life_section(preset: str, changes: dict) -> str | None:
    """The experiment's ``life:`` section with ``changes`` merged in, as the JSON that
    ``packtwin evaluate --life`` takes (it replaces the whole section); None without changes."""
    if not changes:
        return None
    import dataclasses

    import yaml

    from packtwin.eval.life_evaluate import LifeConfig

    with open(configs(preset)[1]) as f:
        life = dict(yaml.safe_load(f)["life"])
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(LifeConfig)})
    if unknown:
        raise SystemExit(f"--life-set: {unknown} are not options of the life: section "
                         f"(packtwin.eval.life_evaluate.LifeConfig)")
    life.update(changes)
    return json.dumps(life)


def run(seeds: list[int], workers: int, preset: str = PRESET, tag: str = "",
        life_changes: dict | None = None) -> None:
    generate, evaluate = configs(preset)
    life = life_section(preset, life_changes or {})
    for seed in seeds:
        store = store_for(seed, preset)
        rc = packtwin(["generate", "--config", generate, "--seed", str(seed), "--store", store,
                       "--workers", str(workers), "--quiet"])
        if rc:
            raise SystemExit(f"generate seed {seed} -> {store} failed (exit {rc})")
        out = output_for(seed, preset, tag)
        if Path(out, "life_report.json").exists():
            continue
        rc = packtwin(["evaluate", "--config", evaluate, "--store", store, "--output", out]
                      + (["--life", life] if life else []))
        if rc:
            raise SystemExit(f"evaluate seed {seed} -> {out} failed (exit {rc})")


def pool_reports(seeds: list[int], out: Path, preset: str = PRESET, tag: str = "") -> dict:
    reports, where = {}, {}
    for s in seeds:
        path = Path(output_for(s, preset, tag), "life_report.json")
        if not path.exists():
            raise SystemExit(f"seed {s}: {path} missing; run without --pool-only first")
        reports[s], where[s] = json.loads(path.read_text()), str(path)
    pooled = pool(reports, where)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(pooled, indent=1))
    Path(str(out) + ".md").write_text(markdown(
        pooled, f"# The life twin over cell draws ({preset}, `scripts/life_seeds.py`)"))
    return pooled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pool-only", action="store_true", help="pool existing reports only")
    p.add_argument("--preset", default=PRESET,
                   help="configs/generate/P.yaml and configs/experiments/P.yaml (default %(default)s)")
    p.add_argument("--out", default=None, help="writes OUT.md and OUT.json (default "
                   "reports/life_seeds for life-demo, reports/P_seeds otherwise)")
    p.add_argument("--life-set", default="{}", help="JSON object merged into the experiment's "
                   "life: section for every draw (e.g. '{\"use_pulse\": false}'); use with --tag")
    p.add_argument("--tag", default="", help="suffix of each draw's output folder and of the "
                   "default pooled report")
    args = p.parse_args(argv)
    try:
        changes = json.loads(args.life_set)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--life-set is not JSON: {exc}") from exc
    if not isinstance(changes, dict):
        raise SystemExit(f"--life-set must be a JSON object, got {args.life_set!r}")
    if changes and not args.tag:
        raise SystemExit("--life-set changes the twin: give --tag so that its reports do not "
                         "take the preset's own folders")
    for path in configs(args.preset):
        if not Path(path).is_file():
            raise SystemExit(f"--preset {args.preset}: {path} not found")
    out = args.out or ("reports/life_seeds" if args.preset == PRESET
                       else f"reports/{args.preset}_seeds") + (f"-{args.tag}" if args.tag else "")
    if not args.pool_only:
        run(args.seeds, args.workers, args.preset, args.tag, changes)
    pool_reports(args.seeds, Path(out), args.preset, args.tag)
    print(Path(out + ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
