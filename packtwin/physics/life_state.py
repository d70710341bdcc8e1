"""The twin over life: slow states (SEI thickness, lost lithium, capacity) carried cycle to cycle.

Only measured signals enter: each cycle's temperature samples, its discharge capacity (a
cycler's coulomb count) and the resistance at the current step that starts its discharge. The
states and the laws that carry them:

* SEI thickness L [m]: solvent-diffusion-limited growth (:func:`packtwin.physics.sei.sei_growth_rate`)
  gives d(L^2)/dt = 2 V_bar D c_sol / z * Arrhenius(T(t)), so over one cycle
  L_c^2 = L_{c-1}^2 + D * g_c with g_c = int 2 V_bar c_sol / z Arrhenius(T) dt from the measured
  temperature (:func:`cycle_exposure`); the carried state is the cumulative exposure
  G_c = sum g. The rate D is the cell's SEI solvent diffusivity.
* Lost lithium n [mol]: the SEI's lithium, gamma (L - L_0) with gamma = z a L_n A / V_bar (PyBaMM's
  ``Loss of lithium to negative SEI``), plus the dead lithium of partially reversible plating.
  OKane2022 turns plated lithium dead at the rate gamma_0 L_0 / L (``Dead lithium decay rate``,
  SEI-limited), so the dead lithium of a cycle is psi * int L_0 / L dt with psi = gamma_0 times
  the cycle's mean reversibly plated lithium [mol]; how much plates depends on the hidden
  negative-electrode potential (not measured here), so psi [mol/s] is a per-cell state learned
  from the measurements (:func:`plating_driver` gives int L_0 / L dt from the law).
* Capacity: Q_c = Q_ref - beta F / 3600 (n_c - n_ref): the cell is lithium-limited, so each mole
  of lithium lost costs beta F / 3600 A h of discharge (beta ~ 1, fitted by calibration).
* Resistance at each discharge's current step: the SEI's ohmic film adds kappa (L - L_ref)
  (kappa ~ rho_sei / (a L_n A)), and the lithium lost moves the electrodes' stoichiometry at
  the top of charge, which changes their charge-transfer resistance by -xi f_ct(T) n (f_ct:
  1 / Arrhenius of the negative exchange current, :func:`charge_transfer_factor`; T the cycle's
  coolest measured temperature, the rested cell at the step). kappa is the film's own; calibration fits xi. Both lithium
  losses grow like L once L >> L_0 (SEI ~ sqrt(D t), dead lithium ~ psi sqrt(t / D)), so the
  capacity alone hardly tells them apart: the resistance is what pins the SEI.

Correction: an extended Kalman filter on the per-cell parameters theta = (ln D, psi) (ln D
constant, psi optionally a slow random walk: plating drifts as the cell ages), updated once per
cycle by the lithium lost (capacity fade) and the resistance rise since the reference cycle
(cycle 2: cycle 1 starts from the parameter set's initial state, not from a CV-full cell). The
prior on ln D is the generator's nominal value with the spread of its cell-to-cell draw; the
prior on psi comes from calibration cells. The capacity of cycle c is predicted before that
cycle's own capacity is read (what a live twin would show); SEI and lithium are the states at
the cycle's end with the parameters known after it.

Lithium from check-ups (``lithium_from="checkup"``): the capacity fade is lithium only through
beta, and beta is not one number: on the life-long pack the regular cycles' fade per lithium
lost is 1.2-1.7 at 25 C 1C, 1.4-2.6 at 2C, 1.2-1.4 at 45 C (three cell draws,
``scripts/diag_life_rate.py``) and differs between cells (the resistance moves the cut-off; the
electrodes' balance moves what a lost lithium costs), so a beta fitted at 1C put the 2C cells'
lost lithium 0.26-0.30 points off. Each check-up's slow discharge instead
reads the particles' lithium itself (:mod:`packtwin.physics.checkup_inventory`); its change since
the first check-up corrects psi (and ln D with ``rate_from_fade``), the capacity is still
predicted through beta. A check-up at cycle k starts from the state at cycle k-1's end (its
reversibly plated lithium strips back into the particles early in the slow discharge, so the
fit sees the SEI and dead lithium only, which is what the twin's n counts).

The fade's weak hold on the SEI rate: SEI lithium grows like sqrt(D t) and the SEI-limited dead
lithium like psi sqrt(t / D), so d(lost lithium)/d(ln D) = (SEI lithium - dead lithium) / 2
once L >> L_0. On the life-long pack at cycle 1000, 25 C, the two are 0.8-1.1 and 0.6-1.0 mmol
of 2.2-3.4 (three cell draws): a 10 % error in D moves the fade by < 0.6 %, less than the
model's own error (the psi walk, the discharge cut on the coupling grid). Corrected by the fade over 1000 cycles the
unseen cells' rates scattered 8-23 % around the truth with no relation to it (three cell draws,
``scripts/diag_life_rate.py``); ``rate_from_fade=False`` keeps ln D at its prior (the nominal
rate for an uncalibrated cell) and lets the fade correct psi alone. Early in life (L near L_0)
the fade does carry D: on the 200-cycle life-demo the correction halves the unseen cells' error,
so the default stays on.

Check-up pulses (``pulse_resistance_ohm``, the store's ``checkup_pulse_resistance``): a 1C step
held 0.1 s half-way through each check-up's slow discharge reads the cell's resistance there.
Its rise since the first pulse is the film grown meanwhile, kappa (L_start,c - L_start,p0) (L at
each check-up cycle's start): in PyBaMM's DFN 20 nm more SEI raise it by kappa x 20 nm within
3 % whatever the charge transfer or temperature (``tests/unit/test_pulse_film.py``); a constant
offset (contact, electrolyte, charge transfer) cancels. What else moves it over life: the
charge transfer at the pulse's stoichiometry, which shifts when a cycle's top of charge does, and
each cell's own surface area (0.97-1.10 of the nominal kappa on seed 0's cells at 25 C over 200
cycles, README "Pack life"): ``pulse_rel_std`` and ``noise_pulse_ohm``. The pulse is the one
measurement here whose sensitivity to ln D does not cancel late in life (the film grows like
sqrt(D)), so it is processed as its own update, gated on its own, and iterated.

Innovation gate: a cycle whose measurement lies more than ``gate`` standard deviations from the
prediction (Mahalanobis distance under the predicted innovation covariance) corrects nothing. On
the life-demo pack at 25 C the pack's discharge ends on its 60 s coupling grid, and from about
cycle 90 on the counted capacity drops by up to 0.05 A h (~50 noise sigmas, 0.7 LLI points) on
every second or third cycle and comes back the next: a shortened discharge, not lithium lost.
Ungated, these one-sided drops pulled the live twin's SEI rate up, so the live twin ended worse
than its forecast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from packtwin.physics.constants import F, R_GAS, CellConstants, okane2022
from packtwin.physics.lli import particle_inventory_mol
from packtwin.physics.sei import sei_growth_rate

AH_PER_MOL = F / 3600.0  # A h of charge per mole of lithium
LITHIUM_SOURCES = ("capacity", "checkup")  # LifeModel.lithium_from
PULSE_ITERATIONS = 5  # iterated-EKF steps of an update that reads a check-up pulse


@dataclass(frozen=True)
class LifeModel:
    """Constants of the slow-state model (SI)."""

    L_0: float  # initial SEI thickness [m]
    D_nominal: float  # nominal SEI solvent diffusivity [m2/s]
    gamma: float  # lithium lost per metre of SEI [mol/m]
    n_li0: float  # lithium in both electrodes' particles at the start [mol]
    beta: float = 1.0  # capacity lost per lithium lost, as a fraction of F / 3600 [1]
    D_spread: float = 0.10  # prior std of ln D (the generator's cell-to-cell spread)
    psi_prior: float = 0.0  # prior mean of the dead-lithium rate at L = L_0 [mol/s]
    psi_prior_std: float = 1e-9  # its prior std [mol/s]
    psi_walk: float = 0.0  # random-walk std of psi per cycle [mol/s] (plating drifts with age)
    noise_mol: float = 5e-6  # measurement noise of the capacity fade, in lithium [mol]
    kappa: float = 5.95e4  # film resistance per SEI thickness at the discharge step [Ohm/m]
    xi: float = 0.0  # charge-transfer resistance change per lithium lost at T_ref [Ohm/mol]
    E_ct: float = 35000.0  # activation energy of the charge-transfer term [J/mol]
    T_ref: float = 298.15  # [K]
    kappa_rel_std: float = 0.03  # cell-to-cell spread of kappa (1 / surface area: radius, eps)
    noise_ohm: float = 2e-5  # measurement noise of the resistance rise [Ohm]
    gate: float = 5.0  # innovation gate: a cycle whose measurement lies further than this many
    # standard deviations (Mahalanobis, of the predicted innovation) corrects nothing
    rate_from_fade: bool = True  # the capacity fade corrects the SEI rate (ln D); False: it
    # corrects the dead-lithium rate only, and ln D stays at its prior unless the resistance
    # moves it (the fade's sensitivity to ln D nearly cancels late in life: see estimate())
    lithium_from: str = "capacity"  # what measures the lithium lost: "capacity" (every regular
    # cycle's fade over beta) or "checkup" (the lithium read from each check-up's slow discharge,
    # packtwin.physics.checkup_inventory; the fade then only feeds the capacity prediction)
    noise_checkup_mol: float = 2e-5  # noise of a check-up's lithium change [mol]
    beta_forget: float = 0.97  # with check-ups: forgetting factor per regular cycle of the cell's
    # own capacity-per-lithium fit (memory ~ 1 / (1 - f) cycles); 1 keeps every cycle
    kappa_pulse: float | None = None  # film resistance per SEI thickness seen by the check-up's
    # pulse [Ohm/m]; None: kappa (the film alone: a pulse in the middle of the slow discharge
    # moves no charge-transfer term with the lithium lost, README "Pack life")
    noise_pulse_ohm: float = 2e-5  # noise of a pulse resistance's rise [Ohm]: a cycle's top of
    # charge shifting by 0.5 % of capacity moved the 0.1 s reading by up to 4e-5 (life-long pack,
    # seed 0, 25 C)
    pulse_rel_std: float = 0.06  # per-cell spread of what the pulse reads of the film, relative
    # (its surface area as kappa_rel_std, and the charge transfer at the pulse's stoichiometry,
    # which drifts as lithium is lost: 0.97-1.10 of the nominal kappa on seed 0's cells at 25 C)
    use_pulse: bool = True  # the check-up pulse (where the run has one) corrects ln D

    def __post_init__(self) -> None:
        if not 0.0 < self.beta_forget <= 1.0:
            raise ValueError(f"LifeModel.beta_forget must be in (0, 1], got {self.beta_forget!r}")
        if self.lithium_from not in LITHIUM_SOURCES:
            raise ValueError(f"LifeModel.lithium_from must be one of {LITHIUM_SOURCES}, got "
                             f"{self.lithium_from!r}")


def life_model(cell: CellConstants | None = None, **changes) -> LifeModel:
    """The LifeModel of a cell's constants (default OKane2022), with optional field changes."""
    c = cell or okane2022()
    a_typ = 3.0 * c.neg.eps_s / c.neg.R  # PyBaMM's a_typ: the fresh electrode's surface area
    gamma = c.sei.z * a_typ * c.neg.L * c.neg.A / c.sei.V_bar
    n_li0 = particle_inventory_mol(c)
    kappa = c.sei.resistivity / (a_typ * c.neg.L * c.neg.A)  # film in series with the reaction
    base = dict(L_0=c.sei.L_0, D_nominal=c.sei.D_sol, gamma=gamma, n_li0=n_li0, kappa=kappa,
                E_ct=c.neg.Ea_k, T_ref=c.T_ref)
    base.update(changes)
    return LifeModel(**base)


def cycle_exposure(temperature_k: np.ndarray, period_s: float,
                   cell: CellConstants | None = None) -> np.ndarray:
    """g_c = int 2 L dL/dt / D dt over each cycle [m2 per (m2/s)] from measured temperatures.

    ``temperature_k`` is (..., samples) on a uniform ``period_s`` grid, NaN after a cycle's end
    (the life data's padding). L_c^2 = L_{c-1}^2 + D g_c is exact for the growth law whatever the
    temperature history (trapezoidal rule in time).
    """
    c = cell or okane2022()
    T = np.asarray(temperature_k, dtype=float)
    if T.ndim < 1 or T.shape[-1] < 2:
        raise ValueError(f"cycle_exposure: need >= 2 temperature samples per cycle, got shape "
                         f"{T.shape}")
    ok = np.isfinite(T)
    if np.any(T[ok] <= 0):
        raise ValueError(f"cycle_exposure: temperatures must be in kelvin (> 0), found min "
                         f"{T[ok].min()}")
    # L dL/dt at L = 1 m and D = 1 m2/s is V_bar c_sol / z * Arrhenius(T): the law's own code.
    rate = sei_growth_rate(torch.tensor(1.0, dtype=torch.float64),
                           torch.as_tensor(np.where(ok, T, c.sei.T_ref)), c, D_sol=1.0).numpy()
    pair = ok[..., 1:] & ok[..., :-1]
    return np.sum(np.where(pair, rate[..., 1:] + rate[..., :-1], 0.0), axis=-1) * period_s


def sei_path(D: float, exposure: np.ndarray, L_start: float) -> np.ndarray:
    """L at the end of each cycle [m] from L_start, rate D [m2/s] and per-cycle exposures."""
    return np.sqrt(L_start ** 2 + D * np.cumsum(np.asarray(exposure, dtype=float)))


def cycle_duration(temperature_k: np.ndarray, period_s: float) -> np.ndarray:
    """Length of each cycle [s] from its valid (finite) samples on the uniform grid."""
    ok = np.isfinite(np.asarray(temperature_k, dtype=float))
    return (ok[..., 1:] & ok[..., :-1]).sum(axis=-1) * float(period_s)


def plating_driver(D: float, exposure: np.ndarray, duration: np.ndarray, L_0: float) -> np.ndarray:
    """int L_0 / L dt over each cycle [s] (the SEI-limited dead-lithium rate's time integral),
    with L at the cycle's middle from the growth law."""
    G = np.cumsum(np.asarray(exposure, dtype=float))
    L_mid = np.sqrt(L_0 ** 2 + D * (G - 0.5 * np.asarray(exposure)))
    return np.asarray(duration, dtype=float) * L_0 / L_mid


def charge_transfer_factor(T_k, model: LifeModel) -> np.ndarray:
    """Charge-transfer resistance at T relative to T_ref: 1 / Arrhenius of the exchange current
    (a hot cell's resistance is lower)."""
    return np.exp(model.E_ct / R_GAS * (1.0 / np.asarray(T_k, dtype=float) - 1.0 / model.T_ref))


def lithium_lost(model: LifeModel, L: np.ndarray, plating_mol: np.ndarray) -> np.ndarray:
    """Lost lithium [mol]: the SEI's plus the plating's."""
    return model.gamma * (np.asarray(L) - model.L_0) + np.asarray(plating_mol)


def capacity_from_lithium(q_ref: float, n: np.ndarray, n_ref: float, beta: float) -> np.ndarray:
    """Discharge capacity [A h] once lithium n [mol] is lost, from the reference cycle's."""
    return q_ref - beta * AH_PER_MOL * (np.asarray(n) - n_ref)


@dataclass
class LifeEstimate:
    """Per-cycle estimates of one cell (arrays over cycles 1..N)."""

    sei_nm: np.ndarray  # x-averaged SEI thickness at cycle end [nm]
    lli_pct: np.ndarray  # loss of lithium inventory [%]
    capacity_ah: np.ndarray  # discharge capacity predicted before the cycle's own is read [A h]
    D: np.ndarray  # SEI solvent diffusivity estimate after each cycle [m2/s]
    psi: np.ndarray  # dead-lithium rate estimate after each cycle [mol/s]


def paths(theta: np.ndarray, model: LifeModel, g: np.ndarray, d: np.ndarray) -> tuple:
    """SEI [m] and lost lithium [mol] at the end of every cycle for theta = (ln D, psi)."""
    D, psi = math.exp(theta[0]), theta[1]
    L = sei_path(D, g, model.L_0)
    n = lithium_lost(model, L, psi * np.cumsum(plating_driver(D, g, d, model.L_0)))
    return L, n


def estimate(exposure: np.ndarray, duration: np.ndarray, capacity_ah: np.ndarray,
             model: LifeModel, resistance_ohm: np.ndarray | None = None,
             step_temperature_k: np.ndarray | None = None, ref_cycle: int = 2,
             update_until: int | None = None,
             checkup_lithium_mol: np.ndarray | None = None,
             pulse_resistance_ohm: np.ndarray | None = None) -> LifeEstimate:
    """Run the filter over one cell's cycles.

    Args:
        exposure: g_c per cycle (:func:`cycle_exposure`) [N].
        duration: length of each cycle [s] (:func:`cycle_duration`) [N].
        capacity_ah: measured discharge capacity per cycle [N] (NaN: not measured, no update).
        resistance_ohm: measured resistance at each discharge's current step [N] (None or NaN:
            capacity only).
        step_temperature_k: temperature at each discharge step [K] [N] (None: T_ref).
        model: the LifeModel (``beta``, priors and noise from calibration).
        ref_cycle: 1-based cycle whose capacity is the reference of the fade.
        update_until: last 1-based cycle whose capacity corrects the states; later cycles are
            carried by the growth law and the measured temperature alone (a forecast).
        checkup_lithium_mol: lithium in the particles read at each check-up [N] (NaN on other
            cycles; :func:`packtwin.physics.checkup_inventory.checkup_lithium`); required with
            ``model.lithium_from == "checkup"``, ignored otherwise.
        pulse_resistance_ohm: each check-up pulse's resistance [N] (NaN on other cycles; the
            store's ``checkup_pulse_resistance``); its rise since the first pulse is the SEI film
            grown meanwhile times ``kappa_pulse`` (with the cell's kappa spread as noise), a
            measurement of the SEI itself where the capacity fade hardly carries the rate.
            Ignored with ``model.use_pulse`` False.
    """
    g = np.asarray(exposure, dtype=float)
    d = np.asarray(duration, dtype=float)
    q = np.asarray(capacity_ah, dtype=float)
    N = len(g)
    res = np.full(N, np.nan) if resistance_ohm is None else np.asarray(resistance_ohm, float)
    T_step = (np.full(N, model.T_ref) if step_temperature_k is None
              else np.asarray(step_temperature_k, float))
    ct = charge_transfer_factor(T_step, model)
    by_checkup = model.lithium_from == "checkup"
    if by_checkup and checkup_lithium_mol is None:
        raise ValueError("estimate: LifeModel.lithium_from is 'checkup' but no "
                         "checkup_lithium_mol was given (the run has no check-up cycles read)")
    n_ck = (np.asarray(checkup_lithium_mol, dtype=float) if by_checkup else np.full(N, np.nan))
    r_p = (np.asarray(pulse_resistance_ohm, dtype=float)
           if pulse_resistance_ohm is not None and model.use_pulse else np.full(N, np.nan))
    if (q.shape != (N,) or d.shape != (N,) or res.shape != (N,) or ct.shape != (N,)
            or n_ck.shape != (N,) or r_p.shape != (N,)):
        raise ValueError(f"estimate: exposure has {N} cycles, duration shape {d.shape}, "
                         f"capacity shape {q.shape}, resistance shape {res.shape}, step "
                         f"temperature shape {ct.shape}, check-up lithium shape {n_ck.shape}, "
                         f"pulse resistance shape {r_p.shape}")
    read = np.flatnonzero(np.isfinite(n_ck))
    c0 = int(read[0]) if read.size else -1  # the first check-up read: the lithium's reference
    pulses = np.flatnonzero(np.isfinite(r_p))
    p0 = int(pulses[0]) if pulses.size else -1  # the first pulse: the film's reference
    kappa_p = model.kappa if model.kappa_pulse is None else model.kappa_pulse
    last = N if update_until is None else min(int(update_until), N)
    theta = np.array([math.log(model.D_nominal), model.psi_prior])
    P = np.diag([model.D_spread ** 2, model.psi_prior_std ** 2])
    r = ref_cycle - 1
    q_ref = q[r] if N > r else math.nan
    D_hist, psi_hist = np.empty(N), np.empty(N)
    q_pred = np.full(N, np.nan)
    beta, sxy, sxx = model.beta, 0.0, 0.0  # the cell's own capacity per lithium (check-ups)
    for c in range(N):
        P[1, 1] += model.psi_walk ** 2
        if c > r and math.isfinite(q_ref):
            _, n = paths(theta, model, g[:c + 1], d[:c + 1])
            q_pred[c] = capacity_from_lithium(q_ref, n[c], n[r], beta)
            if by_checkup and c < last and math.isfinite(q[c]):
                # least squares through the origin of the fade on the lithium lost, both since
                # the reference, over the cell's cycles read so far (older ones forgotten: beta
                # drifts over life); the calibrated beta until a tenth of a percent of the
                # inventory is lost
                x = AH_PER_MOL * (n[c] - n[r])
                sxy, sxx = model.beta_forget * sxy + x * (q_ref - q[c]), \
                    model.beta_forget * sxx + x * x
                if math.sqrt(sxx) > 1e-3 * AH_PER_MOL * model.n_li0:
                    beta = sxy / sxx
        elif c <= r:
            q_pred[c] = q[c]  # the reference itself is read, not predicted
        if r < c < last:
            # lithium lost since the reference (capacity) and SEI film resistance rise
            fade = math.nan if by_checkup else (q_ref - q[c]) / (model.beta * AH_PER_MOL)
            # lithium lost between the states the two check-ups start from (cycles c0-1, c-1)
            drop = n_ck[c0] - n_ck[c] if c0 >= 0 and c > c0 else math.nan
            rise_p = r_p[c] - r_p[p0] if p0 >= 0 and c > p0 else math.nan
            y = np.array([fade, res[c] - res[r], drop, rise_p])

            def linearised(th, rows):
                h, H, grown, grown_p = _measurement(th, model, g[:c + 1], d[:c + 1], ct[:c + 1],
                                                    r, c0 if 0 <= c0 < c else 0,
                                                    p0 if 0 <= p0 < c else 0, kappa_p)
                if not model.rate_from_fade:
                    H[0, 0] = H[2, 0] = 0.0
                # the cell's own kappa is unknown within its spread: noise grows with the film
                film = model.kappa_rel_std * model.kappa * grown
                film_p = model.pulse_rel_std * kappa_p * grown_p
                noise = np.array([model.noise_mol ** 2, model.noise_ohm ** 2 + film ** 2,
                                  model.noise_checkup_mol ** 2,
                                  model.noise_pulse_ohm ** 2 + film_p ** 2])
                return h[rows], H[rows], np.diag(noise[rows])

            # The pulse is processed after the others, as its own update (independent noise, so
            # the same posterior for a linear model): each has its own gate, and its update is
            # iterated (Gauss-Newton, the iterated EKF): a pulse's rise can move ln D by several
            # prior sigmas at once, where one linearisation at the prior undershoots and the
            # shrunk P then holds the estimate short.
            for rows, iterations in ((np.isfinite(y) & (np.arange(4) < 3), 0),
                                     (np.isfinite(y) & (np.arange(4) == 3), PULSE_ITERATIONS)):
                if not rows.any():
                    continue
                h, Hu, Rn = linearised(theta, rows)
                S_inv = np.linalg.inv(Hu @ P @ Hu.T + Rn)
                nu = y[rows] - h
                if math.sqrt(float(nu @ S_inv @ nu)) > model.gate:
                    continue
                K = P @ Hu.T @ S_inv
                th = theta + K @ nu
                for _ in range(iterations):
                    h, Hu, Rn = linearised(th, rows)
                    K = P @ Hu.T @ np.linalg.inv(Hu @ P @ Hu.T + Rn)
                    th = theta + K @ (y[rows] - h - Hu @ (theta - th))
                theta = th
                P = P - K @ Hu @ P
        D_hist[c], psi_hist[c] = math.exp(theta[0]), theta[1]
    # Every cycle's states with the parameters known after it (its whole history re-read).
    L, n = np.empty(N), np.empty(N)
    for c in range(N):
        Lc, nc = paths(np.array([math.log(D_hist[c]), psi_hist[c]]), model, g[:c + 1], d[:c + 1])
        L[c], n[c] = Lc[-1], nc[-1]
    return LifeEstimate(sei_nm=L * 1e9, lli_pct=100.0 * n / model.n_li0, capacity_ah=q_pred,
                        D=D_hist, psi=psi_hist)


def _measurement(theta, model: LifeModel, g, d, ct, r: int, c0: int = 0, p0: int = 0,
                 kappa_p: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """h = (lithium lost, resistance rise) between cycle r and the last one (0-based), the
    lithium lost between the starts of check-up cycle c0 and of the last cycle (the ends of the
    cycles before them), and the pulse resistance's film rise between the starts of pulse cycle
    p0 and of the last cycle (the pulse falls inside the check-up's discharge, on the SEI the
    cycle started with); the Jacobian [4, 2] in (ln D, psi) (exact in psi: h is linear in it;
    central difference in ln D), the SEI grown since cycle r and since p0's start [m].
    ``ct``: Arrhenius factor of the charge-transfer term per cycle."""
    kp = model.kappa if kappa_p is None else kappa_p

    def h_of(th):
        L, n = paths(th, model, g, d)
        rise = model.kappa * (L[-1] - L[r]) - model.xi * (ct[-1] * n[-1] - ct[r] * n[r])
        before = np.concatenate([[0.0], n])  # before[k]: lost at cycle k's start
        L_before = np.concatenate([[model.L_0], L])
        return np.array([n[-1] - n[r], rise, before[-2] - before[c0],
                         kp * (L_before[-2] - L_before[p0])])

    h = h_of(theta)
    eps = 1e-4
    dh_dlnD = (h_of(theta + [eps, 0.0]) - h_of(theta - [eps, 0.0])) / (2 * eps)
    dh_dpsi = h_of(np.array([theta[0], 1.0])) - h_of(np.array([theta[0], 0.0]))
    L, _ = paths(theta, model, g, d)
    L_before = np.concatenate([[model.L_0], L])
    return (h, np.stack([dh_dlnD, dh_dpsi], axis=1), float(L[-1] - L[r]),
            float(L_before[-2] - L_before[p0]))
