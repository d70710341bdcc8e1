"""What the twin reads and estimates, each declared once: features, estimated outputs, electrodes.

``packtwin.schema`` declares what a *store* holds; this module declares what the *twin* works with,
in the schema's names:

* :class:`Features`: the measured inputs of one batch as named tensors (no positions to unpack);
  their order in the packed ``[..., F]`` tensor is :data:`FEATURES` (saved with the checkpoint).
* :data:`ESTIMATED`: the variables the twin (and every baseline) estimates, in the schema's names.
* :class:`Electrode`: everything that differs between the negative and positive electrode
  (stored variable, x and r dimensions, network output key, constants), built once per electrode
  the way PyBaMM builds ``DomainLithiumIonParameters("negative")``; loops take the object.

Charge has one unit everywhere: coulombs (the physics' SI unit), from the store's current to the
network's input and the conservation residuals.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from packtwin import schema
from packtwin.physics.constants import NEGATIVE, POSITIVE, CellConstants, ElectrodeConstants

CHARGE_UNITS = "C"


@dataclass(frozen=True)
class Features:
    """The twin's inputs, one tensor (or array) per quantity, each [..., T].

    A battery-management system measures or counts every one of them causally: ``cycle`` is the
    snapshot's cycle number (ageing states such as SEI cannot be told apart from one cycle's V/I/T
    without it); ``charge_passed`` is counted from the start of the cycle.
    """

    voltage: object  # [V]
    current: object  # [A], discharge > 0
    temperature: object  # [K]
    ambient_temperature: object  # [K]
    time: object  # [s] since the start of the cycle
    charge_passed: object  # [C] since the start of the cycle
    cycle: object  # [1]

    @classmethod
    def unpack(cls, packed) -> "Features":
        """Named view of a packed [..., T, F] tensor (order :data:`FEATURES`)."""
        if packed.shape[-1] != len(FEATURES):
            raise ValueError(f"features have {packed.shape[-1]} channels, expected "
                             f"{len(FEATURES)}: {FEATURES}")
        return cls(*(packed[..., i] for i in range(len(FEATURES))))

    def pack(self, stack):
        """Packed [..., T, F] array; ``stack`` is ``np.stack`` or ``torch.stack``."""
        return stack([getattr(self, f) for f in FEATURES], -1)


FEATURES: tuple[str, ...] = tuple(f.name for f in fields(Features))
# Units of each feature, saved with a checkpoint so that one trained on other units is refused.
FEATURE_UNITS: dict[str, str] = {"voltage": "V", "current": "A", "temperature": "K",
                                 "ambient_temperature": "K", "time": "s",
                                 "charge_passed": CHARGE_UNITS, "cycle": "1"}
assert tuple(FEATURE_UNITS) == FEATURES


def feature_index(name: str) -> int:
    """Channel of a feature in the packed tensor."""
    if name not in FEATURES:
        raise KeyError(f"unknown feature {name!r}; features: {FEATURES}")
    return FEATURES.index(name)


# Per-time-step scalar estimates with their own head (schema names); their order is the order of
# the network's scalar head and normalisation buffers.
SCALAR_TARGETS: tuple[str, ...] = ("sei_thickness_avg", "plating_margin", "soc")


@dataclass(frozen=True)
class Electrode:
    """One electrode as the twin and the metrics see it.

    Args:
        domain: ``"negative"`` or ``"positive"`` (PyBaMM's domain names).
        key: short tag used in output names (``theta_n``, ``fick_n``, ...).
        index: position in the network's per-electrode buffers (``c_max``, ``theta_ref``).
        variable: stored particle concentration (``c_s_n``).
        x_dim, r_dim: its through-thickness and radial dimensions in the store.
    """

    domain: str
    key: str
    index: int
    variable: str
    x_dim: str
    r_dim: str

    @property
    def theta(self) -> str:
        """Network output: stoichiometry c / c_max on the stored grid."""
        return f"theta_{self.key}"

    @property
    def param_prefix(self) -> str:
        """Prefix of this electrode's per-cell parameter keys (``neg_radius``)."""
        return self.domain[:3]

    def param(self, name: str) -> str:
        """Per-cell parameter key of this electrode, e.g. ``param("radius")`` -> ``neg_radius``."""
        key = f"{self.param_prefix}_{name}"
        if key not in schema.PARAMETERS:
            raise KeyError(f"no parameter {key!r} in packtwin.schema.PARAMETERS")
        return key

    @property
    def c_max_info(self) -> str:
        """Key of this electrode's c_max in ``datamodule.store_info``."""
        return f"c_max_{self.key}"

    def constants(self, cell: CellConstants) -> ElectrodeConstants:
        return cell.electrode(self.domain)

    def c_max_of(self, ds) -> float | None:
        """The store's maximum concentration [mol/m3] (attribute ``c_max`` of the variable)."""
        c_max = ds[self.variable].attrs.get("c_max")
        return None if c_max is None else float(c_max)

    @classmethod
    def of(cls, domain: str) -> "Electrode":
        key = {NEGATIVE: "n", POSITIVE: "p"}[domain]
        return cls(domain, key, (NEGATIVE, POSITIVE).index(domain), f"c_s_{key}",
                   getattr(schema, f"X_{key.upper()}"), getattr(schema, f"R_{key.upper()}"))


ELECTRODES: tuple[Electrode, ...] = (Electrode.of(NEGATIVE), Electrode.of(POSITIVE))
NEG, POS = ELECTRODES
FIELD_TARGETS: tuple[str, ...] = tuple(e.variable for e in ELECTRODES)
# What the twin estimates (and a baseline must provide), in the schema's names; voltage is the
# reconstruction of the measured input.
ESTIMATED: tuple[str, ...] = FIELD_TARGETS + SCALAR_TARGETS + ("voltage",)


def electrode_of(variable: str) -> Electrode:
    for e in ELECTRODES:
        if variable in (e.variable, e.key, e.domain):
            return e
    raise KeyError(f"{variable!r} is no electrode; electrodes: "
                   f"{[e.variable for e in ELECTRODES]}")
# The network's output key of each estimated variable (fields as stoichiometry c / c_max).
NET_OUTPUTS: tuple[str, ...] = tuple(electrode_of(n).theta if n in FIELD_TARGETS else n
                                     for n in ESTIMATED)
