"""Solving an ODE/PDE vector field with diffrax: solver choice, step-size control and adjoint as config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from diffrax import AbstractERK, ButcherTableau, ThirdOrderHermitePolynomialInterpolation
from jax import Array

from pdeflow.pde.adaptive_step import adaptive_discrete_solve
from pdeflow.pde.fixed_step import discrete_adjoint_solve, tableau_of
from pdeflow.validation import check_finite_numbers


class RK4(AbstractERK):
    """Kutta's 3/8-rule fourth-order Runge–Kutta method (4 stages, fixed steps only: no error estimate).

    The classical fourth-order method as ``torchdiffeq``'s ``rk4`` computes it, so the two libraries can be
    compared step for step. Third-order Hermite interpolation between steps."""

    tableau = ButcherTableau(
        a_lower=(np.array([1 / 3]), np.array([-1 / 3, 1.0]), np.array([1.0, -1.0, 1.0])),
        b_sol=np.array([1 / 8, 3 / 8, 3 / 8, 1 / 8]),
        b_error=np.zeros(4),
        c=np.array([1 / 3, 2 / 3, 1.0]),
    )
    interpolation_cls = ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 4


SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "rk4": RK4,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
}
FIXED_STEP_ONLY = ("euler", "rk4")  # no embedded error estimate
STAGES = {"euler": 1, "heun": 2, "midpoint": 2, "ralston": 2, "rk4": 4, "bosh3": 3, "tsit5": 6, "dopri5": 6,
          "dopri8": 12}  # vector-field evaluations per step (first-same-as-last not counted as a saving)
ADJOINTS = ("recursive", "backsolve", "stored", "discrete")
FIXED_STEP_ADJOINTS = ("stored",)  # save on the step grid only


class SolverError(RuntimeError):
    """A solve failed (hit max_steps, or produced NaN/Inf); the message says what to change."""


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    """How the depth-time ODE is solved.

    Attributes:
        solver: one of ``SOLVERS`` (explicit Runge–Kutta methods from diffrax).
        adaptive: adaptive steps with a PID controller (needs a solver with an error estimate, i.e. not
            ``euler``); otherwise fixed steps of ``dt0``.
        dt0: initial (adaptive) or fixed step size, in layers.
        rtol, atol: tolerances of the PID controller. The defaults are loose because a fitted surrogate is
            defined by its solve; the report re-solves with tolerances 100x tighter to show what that costs.
        max_steps: a solve that needs more steps fails with `SolverError`.
        adjoint: ``"recursive"`` (differentiate through the solver with recursive checkpointing: memory
            O(√max_steps) states, every step's forward recomputed in the backward pass and each stage's once more
            before its VJP), ``"backsolve"``
            (solve the adjoint ODE backwards in time; O(1) memory, less exact) or ``"stored"`` (fixed steps
            only: the steps of diffrax's solver run in a ``lax.scan`` whose reverse pass keeps every step's
            start and its stages' inputs, so no step is re-solved; diffrax's stage loop is checkpointed, so each
            stage's forward is recomputed before its VJP; memory grows with the number of steps) or ``"discrete"``
            (a hand-written discrete adjoint, the recursive adjoint's gradient to round-off. Fixed steps:
            `pdeflow.pde.fixed_step`, one reverse scan that recomputes each step's stages from its saved start
            state, memory one state per step. Adaptive steps: `pdeflow.pde.adaptive_step`, diffrax's loop written
            out with the same values, its accepted steps' stages recorded so that no step is re-solved: two
            forward evaluations and one VJP a stage against the recursive adjoint's three and one; memory
            ``(1 + stages)`` states for each of the last 16 accepted steps, more steps differentiated in chunks,
            each recorded by solving again; the default preset's).
    """

    solver: str = "tsit5"
    adaptive: bool = True
    dt0: float = 0.25
    rtol: float = 1e-2
    atol: float = 1e-3
    max_steps: int = 256
    adjoint: str = "recursive"

    def __post_init__(self):
        check_finite_numbers(self)
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {sorted(SOLVERS)}.")
        if self.adjoint not in ADJOINTS:
            raise ValueError(f"unknown adjoint {self.adjoint!r}; choose one of {list(ADJOINTS)}.")
        if self.adaptive and self.solver in FIXED_STEP_ONLY:
            raise ValueError(f"{self.solver} has no error estimate, so it cannot take adaptive steps; set "
                             "adaptive=False (fixed steps of dt0) or pick heun/tsit5/dopri5.")
        if self.adjoint in FIXED_STEP_ADJOINTS and self.adaptive:
            raise ValueError(f"the {self.adjoint} adjoint needs fixed steps (adaptive=False): a scan has a fixed "
                             "length; use adjoint='discrete' or 'recursive' with adaptive steps.")
        if not (self.rtol > 0 and self.atol > 0):
            raise ValueError(f"need rtol > 0 and atol > 0; got rtol={self.rtol}, atol={self.atol}.")
        if not self.dt0 > 0 or self.max_steps < 1:
            raise ValueError(f"need dt0 > 0 and max_steps >= 1; got dt0={self.dt0}, max_steps={self.max_steps}.")

    def remedy(self) -> str:
        """What to try when a solve fails."""
        if self.adaptive:
            return (f"raise max_steps (now {self.max_steps}), loosen rtol/atol (now {self.rtol}/{self.atol}), "
                    "lower the learning rate or the gradient clip, or use fixed steps (adaptive=False)")
        return f"take smaller fixed steps (dt0, now {self.dt0}) or lower the learning rate / gradient clip"


def solve(field: Callable, y0, args, t_end: float, save_times: Array, config: SolverConfig):
    """Solve ``dy/dt = field(t, y, args)`` from ``t = 0`` to ``t_end`` and save ``y`` at ``save_times``.

    Returns:
        ``(ys, ok, num_steps)``: the saved states with a leading ``len(save_times)`` axis, a boolean scalar
        that is False when the solve failed or produced non-finite values, and the number of steps taken.
        Never raises inside jit: callers turn ``ok == False`` into a `SolverError` with ``config.remedy()``.
    """
    solver = SOLVERS[config.solver]()
    if config.adjoint == "stored":
        return _solve_stored(field, y0, args, t_end, save_times, config, solver)
    if config.adjoint == "discrete" and config.adaptive:
        return adaptive_discrete_solve(field, solver, diffrax.PIDController(rtol=config.rtol, atol=config.atol), y0,
                                       args, t_end, save_times, config.dt0, config.max_steps)
    if config.adjoint == "discrete":
        return _solve_discrete(field, y0, args, t_end, save_times, config, solver)
    if config.adaptive:
        controller = diffrax.PIDController(rtol=config.rtol, atol=config.atol)
    else:
        controller = diffrax.ConstantStepSize()
    adjoint = (diffrax.RecursiveCheckpointAdjoint() if config.adjoint == "recursive"
               else diffrax.BacksolveAdjoint(solver=solver, stepsize_controller=controller))
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0=0.0, t1=t_end, dt0=config.dt0, y0=y0, args=args,
        saveat=diffrax.SaveAt(ts=save_times), stepsize_controller=controller, adjoint=adjoint,
        max_steps=config.max_steps, throw=False,
    )
    ok = (solution.result == diffrax.RESULTS.successful) & jnp.all(jnp.isfinite(solution.ys))
    return solution.ys, ok, solution.stats["num_steps"]


def fixed_step_grid(t_end: float, save_times, dt0: float) -> tuple[int, np.ndarray]:
    """``(steps per unit interval between save times, save times)`` for fixed steps of ``dt0`` that land on
    every save time; raises ``ValueError`` when they do not."""
    save = np.asarray(save_times, np.float64)
    gaps = np.diff(np.concatenate([[0.0], save]))
    per_gap = np.rint(gaps / dt0)
    if save[0] != 0.0 or not np.allclose(per_gap * dt0, gaps, atol=1e-9) or np.any(per_gap[1:] < 1) \
            or not np.allclose(per_gap[1:], per_gap[1]) or not np.isclose(save[-1], t_end):
        raise ValueError(f"the stored and discrete adjoints take fixed steps of dt0={dt0} that must land on every "
                         f"save time (evenly spaced from 0 to {t_end}); choose dt0 = 1/k.")
    return int(per_gap[1]), save


def _solve_stored(field: Callable, y0, args, t_end: float, save_times, config: SolverConfig, solver):
    """Fixed steps of diffrax's ``solver`` in nested ``lax.scan`` loops (save times outside, steps inside)."""
    steps, save = fixed_step_grid(t_end, save_times, config.dt0)
    if steps * (len(save) - 1) > config.max_steps:
        return jnp.full((len(save),) + y0.shape, jnp.nan, y0.dtype), jnp.asarray(False), jnp.asarray(0)
    terms = diffrax.ODETerm(field)
    dt = (save[1] - save[0]) / steps
    state = solver.init(terms, 0.0, dt, y0, args)

    def one_step(carry, t0):
        y, solver_state = carry
        y, _, _, solver_state, _ = solver.step(terms, t0, t0 + dt, y, args, solver_state, made_jump=False)
        return (y, solver_state), None

    def one_interval(carry, t_start):
        carry, _ = jax.lax.scan(one_step, carry, t_start + dt * jnp.arange(steps, dtype=y0.dtype))
        return carry, carry[0]

    _, ys = jax.lax.scan(one_interval, (y0, state), jnp.asarray(save[:-1], y0.dtype))
    ys = jnp.concatenate([y0[None], ys])
    ok = jnp.all(jnp.isfinite(ys))
    return ys, ok, jnp.asarray(steps * (len(save) - 1))


def _solve_discrete(field: Callable, y0, args, t_end: float, save_times, config: SolverConfig, solver):
    """Fixed steps with `pdeflow.pde.fixed_step`'s discrete adjoint (the solver's Butcher tableau)."""
    steps, save = fixed_step_grid(t_end, save_times, config.dt0)
    if steps * (len(save) - 1) > config.max_steps:
        return jnp.full((len(save),) + y0.shape, jnp.nan, y0.dtype), jnp.asarray(False), jnp.asarray(0)
    dt = float(save[1] - save[0]) / steps
    ys = discrete_adjoint_solve(field, tableau_of(solver), y0, args, dt, steps, len(save) - 1)
    return ys, jnp.all(jnp.isfinite(ys)), jnp.asarray(steps * (len(save) - 1))
