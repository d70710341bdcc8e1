"""Size, memory and work of a generator run, estimated from the config before anything runs.

The store holds every schema variable on the padded grid; a worker holds one scenario's result
(float64 fields of every snapshot plus the cycle being recorded) and the main process converts
one result at a time for writing. A run past ``max_store_gb`` or ``max_memory_gb`` is refused
with the estimate, and both caps are options the user can raise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from packtwin import schema
from packtwin.sim import config as cfgmod
from packtwin.sim.config import ConfigError, GenerateConfig

GB = 1e9
MODEL_BYTES = 0.3 * GB  # a built DFN model and its solver, per worker process
DEFAULT_MAX_STORE_GB = 50.0


def default_max_memory_gb() -> float:
    """Half the machine's physical memory."""
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return 8.0


@dataclass
class Estimate:
    n_cells: int
    n_time: int
    n_snapshots: int
    store_bytes: float
    scenario_bytes: float  # one scenario's result in a worker (float64)
    memory_bytes: float  # peak over workers and the writing main process
    cell_steps: float  # cell model steps over the whole run (the work)

    def describe(self) -> str:
        return (f"{self.n_cells} cells x {self.n_time} samples per cycle x {self.n_snapshots} "
                f"snapshot cycles per scenario: store ~{self.store_bytes / GB:.3g} GB, memory "
                f"~{self.memory_bytes / GB:.3g} GB ({self.scenario_bytes / GB:.3g} GB per "
                f"scenario in flight), ~{self.cell_steps:.3g} cell steps")


def estimate(cfg: GenerateConfig, workers: int = 1) -> Estimate:
    """Estimate the run of ``cfg`` with ``workers`` scenarios in flight (pure arithmetic)."""
    from packtwin.sim.stored_grid import stored_sizes

    vp = stored_sizes(cfg.model)  # the store's grid, not the solver's mesh
    n_cells = cfg.pack.n_series * cfg.pack.n_parallel
    n_time = cfgmod.n_time(cfg)
    # len(range) is O(1): snapshot_cycles() would build a list of every cycle (1e8 for 1e8 cycles)
    every = max(cfg.snapshot_every, 1)
    n_snap = len(range(1, cfg.n_cycles + 1, every)) + (1 if (cfg.n_cycles - 1) % every else 0)
    sizes = {schema.SCENARIO: len(cfg.scenarios), schema.CELL: n_cells, schema.SNAPSHOT: n_snap,
             schema.TIME: n_time, schema.CYCLE: cfg.n_cycles, schema.X_N: vp.get("x_n", 0),
             schema.X_P: vp.get("x_p", 0), schema.R_N: vp.get("r_n", 0),
             schema.R_P: vp.get("r_p", 0),
             schema.X: vp.get("x_n", 0) + vp.get("x_s", 0) + vp.get("x_p", 0)}
    store_bytes = scenario_values = 0.0
    life = (schema.LIFE_VARIABLES[n] for n in cfgmod.life_vars(cfg))
    for v in [*schema.VARIABLES.values(), *life]:
        n = math.prod(float(sizes.get(d, 1)) for d in v.dims)
        store_bytes += n * schema.np.dtype(v.dtype).itemsize
        scenario_values += n / max(sizes[schema.SCENARIO], 1)
    # a result holds every snapshot, the recorder one more cycle, all in float64
    scenario_bytes = 8.0 * scenario_values * (n_snap + 1) / max(n_snap, 1)
    in_flight = max(1, min(workers, len(cfg.scenarios)))
    memory = in_flight * (scenario_bytes + MODEL_BYTES) + 2 * scenario_bytes
    steps = float(len(cfg.scenarios)) * cfg.n_cycles * (n_time - 1) * n_cells
    return Estimate(n_cells, n_time, n_snap, store_bytes, scenario_bytes, memory, steps)


def check(cfg: GenerateConfig, workers: int = 1, max_store_gb: float | None = None,
          max_memory_gb: float | None = None) -> Estimate:
    """Raise ConfigError with the estimate when a cap is exceeded; returns the estimate."""
    max_store_gb = DEFAULT_MAX_STORE_GB if max_store_gb is None else max_store_gb
    max_memory_gb = default_max_memory_gb() if max_memory_gb is None else max_memory_gb
    est = estimate(cfg, workers)
    over = []
    if est.store_bytes > max_store_gb * GB:
        over.append(f"the store would be ~{est.store_bytes / GB:.3g} GB > --max-store-gb "
                    f"{max_store_gb:g}")
    if est.memory_bytes > max_memory_gb * GB:
        over.append(f"the run would need ~{est.memory_bytes / GB:.3g} GB of memory > "
                    f"--max-memory-gb {max_memory_gb:g}")
    if over:
        ps = {i: cfgmod.phase_steps(cfg, s) for i, s in enumerate(cfg.scenarios)}
        worst = max(ps, key=lambda i: sum(ps[i].values()))
        raise ConfigError(
            f"refusing to start: {' and '.join(over)} ({est.describe()}; the longest cycle is "
            f"scenario {worst}'s, steps per phase {ps[worst]}, from its C-rates, the pulse "
            f"pattern's mean and the protocol's time-outs); reduce the pack, cycles, snapshots "
            f"or mesh, or raise the cap")
    return est
