"""Fixtures shared by the unit tests (packtwin.sim cells; scripts/ loaded as modules)."""

import importlib.util
from pathlib import Path

import pytest

# A coarse mesh: a DFN cell builds and steps in well under a second (the physics is not converged).
TINY_MESH = {"x_n": 3, "x_s": 2, "x_p": 3, "r_n": 4, "r_p": 4}


@pytest.fixture(scope="module")
def tiny_cell():
    """One built PyBaMM cell on TINY_MESH (process-wide cached model, see sim.cell.get_model)."""
    pytest.importorskip("pybamm")
    from packtwin.sim import config as cfgmod
    from packtwin.sim.cell import get_model

    mc = cfgmod.ModelConfig(var_pts=TINY_MESH, submesh={}, stored_r_points=None)
    return get_model(mc, ("neg_c_init", "neg_j0", "neg_radius"), (5.86e-6 * 1.02, 5.22e-6))


@pytest.fixture
def load_script():
    """``load_script("name")``: scripts/name.py imported as a module (scripts/ is no package)."""
    root = Path(__file__).resolve().parents[2] / "scripts"

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
