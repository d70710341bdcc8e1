"""Pure torch physics of the OKane2022 cell: residuals and laws the twin's losses are built from.

No Lightning, xarray or PyBaMM here. SI units throughout; PyBaMM's sign conventions (cell current
> 0 is discharge; interfacial current > 0 is de-intercalation). One mechanism per module:

constants     F, R_GAS, ElectrodeConstants/SEIConstants/CellConstants, okane2022()
derivatives   Derivs, autograd_derivs, fd_derivs, derivatives(method, ...), surface_gradient
diffusion     arrhenius, fick_residual(_normalised), surface_flux_residual,
              centre_condition_residual
kinetics      exchange_current_density, butler_volmer, inverse_butler_volmer
ocp           ocp_negative, ocp_positive
conservation  mean_interfacial_current, average_concentration, lithium_balance_residual
sei           sei_growth_rate, sei_residual, plating_margin_criterion
voltage       spm_terminal_voltage
analytic      exact solutions for tests (Crank constant flux, polynomials, sqrt(t) SEI)

The reduced electrochemical core (a small DFN, batched over cells, backward Euler):
core_params          CellDesign, CoreParams (per-cell, from a store's truth table), truth_table
core_grid            SphereGrid (particle shells), ThicknessGrid (x cells), interp_linear
particle_fv          spherical diffusion on finite volumes, implicit step, surface value
electrolyte          Nyman2008 transport, electrolyte_step (FV, Picard in D_e), tridiagonal_solve
current_distribution solve_electrode (Newton on the reaction distribution), terminal_voltage
electrode_pair       ElectrodePair: both electrodes' Newton in one batched solve (the core's path)
core                 ReducedCore (initial_state, step, measure, simulate), CoreConfig
ekf                  CoreEKF: iterated EKF on the core (classical state-estimation peer)
observer_stream      PackStream: a pack stepped sample by sample (V, I, T in; estimates out)
learned_observer     ObserverNet, LearnedObserver: bounded lithium-conserving learned correction
plating              plating over life: the core through each logged cycle (events, lowest margin),
                     PyBaMM's partially reversible plating kinetics (plated lithium)
"""
