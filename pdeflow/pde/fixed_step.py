"""The discrete adjoint of a fixed-step explicit Runge–Kutta solve, written once for every Butcher tableau.

The solve is one `jax.custom_vjp`. Forward: a ``lax.scan`` over the steps that keeps only each step's start
state. Backward: one reverse ``lax.scan`` that recomputes each step's stages from its start state and
back-propagates through them with `jax.vjp` of the field, stage by stage:

    k_i = f(t + c_i dt, Y_i),   Y_i = y + dt Σ_{j<i} a_ij k_j,   y' = y + dt Σ_i b_i k_i
    k̄_i = dt (b_i ȳ' + Σ_{j>i} a_ji Ȳ_j),   (Ȳ_i, θ̄_i) = vjp_f(t + c_i dt, Y_i)(k̄_i),   ȳ = ȳ' + Σ_i Ȳ_i

This is the exact gradient of the computed solution (the same as autodiff through the same steps, to
round-off) without the solver loop's saved carries, dynamic slices and checkpoint bookkeeping: memory is one
state per step (``(steps, *y.shape)``), and the backward pass costs one field evaluation and one field VJP per
stage. Stages that neither the step's result nor a later stage uses (the last stage of a first-same-as-last
method such as tsit5 or dopri5) are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero


@dataclasses.dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method: ``a[i]`` holds the coefficients of stages ``0..i-1`` in stage ``i``
    (``a[0] == ()``), ``b`` the weights of the stages in the step, ``c`` the stages' times (``c[0] == 0``)."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    def __post_init__(self):
        s = len(self.b)
        if len(self.a) != s or len(self.c) != s or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"a tableau of {s} stages needs a[i] of length i and {s} times c; got a={self.a}, "
                             f"c={self.c}.")

    @property
    def needed(self) -> tuple[bool, ...]:
        """Whether each stage contributes to the step's result (directly, or through a later stage that does)."""
        needed = [False] * len(self.b)
        for i in reversed(range(len(self.b))):
            needed[i] = self.b[i] != 0 or any(needed[j] and self.a[j][i] != 0 for j in range(i + 1, len(self.b)))
        return tuple(needed)


EULER = Tableau(a=((),), b=(1.0,), c=(0.0,))


def tableau_of(solver) -> Tableau:
    """The tableau of a diffrax explicit Runge–Kutta solver (`diffrax.Euler` included); ``ValueError`` for
    anything else (implicit or stochastic solvers)."""
    if isinstance(solver, diffrax.Euler):
        return EULER
    table = getattr(solver, "tableau", None)
    if not isinstance(table, diffrax.ButcherTableau) or table.implicit or table.a_diagonal is not None:
        raise ValueError(f"the discrete adjoint needs an explicit Runge–Kutta solver; {type(solver).__name__} is "
                         "not one: use adjoint='recursive'.")
    a = ((),) + tuple(tuple(float(x) for x in row) for row in table.a_lower)
    return Tableau(a=a, b=tuple(float(x) for x in table.b_sol),
                   c=(float(table.c1),) + tuple(float(x) for x in table.c))


def _combine(y, dt: float, weights, ks):
    """``y + dt Σ w_j k_j`` over the nonzero weights (pytrees ``y`` and ``k_j`` of one structure)."""
    terms = [(w, k) for w, k in zip(weights, ks) if w != 0]
    if not terms:
        return y
    return jax.tree.map(lambda y_, *k_: y_ + dt * sum(w * kj for (w, _), kj in zip(terms, k_)), y,
                        *(k for _, k in terms))


def _step(field: Callable, tableau: Tableau, dt: float, t, y, args):
    """One step of the method from ``(t, y)``."""
    needed, ks = tableau.needed, []
    for i in range(len(tableau.b)):
        ks.append(field(t + tableau.c[i] * dt, _combine(y, dt, tableau.a[i], ks), args) if needed[i] else None)
    return _combine(y, dt, tableau.b, ks)


def _step_vjp(field: Callable, tableau: Tableau, dt: float, t, y, args, y_bar):
    """``(ȳ, args̄)``: the cotangents of a step's start state and of ``args`` given ``ȳ'`` of its result; the
    stages are recomputed from ``y`` and each is back-propagated with `jax.vjp` of the field."""
    needed, s = tableau.needed, len(tableau.b)
    ks, pullbacks = [None] * s, [None] * s
    for i in range(s):
        if needed[i]:
            stage = _combine(y, dt, tableau.a[i], ks)
            ks[i], pullbacks[i] = jax.vjp(lambda u, p, ti=t + tableau.c[i] * dt: field(ti, u, p), stage, args)
    stage_bars = [None] * s  # Ȳ_i
    state_bar, args_bar = y_bar, None
    for i in reversed(range(s)):
        if not needed[i]:
            continue
        weights = [tableau.b[i]] + [tableau.a[j][i] if needed[j] else 0.0 for j in range(i + 1, s)]
        parts = [y_bar] + stage_bars[i + 1:]
        k_bar = _combine(jax.tree.map(jnp.zeros_like, y_bar), dt, weights, parts)
        stage_bars[i], a_bar = pullbacks[i](k_bar)
        state_bar = jax.tree.map(jnp.add, state_bar, stage_bars[i])
        args_bar = a_bar if args_bar is None else jax.tree.map(jnp.add, args_bar, a_bar)
    return state_bar, args_bar


def _differentiable(leaf) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)


@dataclasses.dataclass(frozen=True)
class ArgsSplit:
    """A pytree's leaves split into the floating-point ones (which get cotangents) and the others (integer and
    boolean leaves, e.g. masks), and merged back: what a `jax.custom_vjp` solve takes its ``args`` as."""

    treedef: object
    differentiable: tuple[bool, ...]

    @classmethod
    def of(cls, tree) -> ArgsSplit:
        leaves, treedef = jax.tree.flatten(tree)
        return cls(treedef, tuple(_differentiable(leaf) for leaf in leaves))

    def split(self, leaves) -> tuple[list, list]:
        """``(float_leaves, other_leaves)`` of the tree's flat leaves."""
        return ([x for x, d in zip(leaves, self.differentiable) if d],
                [x for x, d in zip(leaves, self.differentiable) if not d])

    def merge(self, float_leaves, other_leaves):
        """The tree from its two kinds of leaves."""
        it_f, it_o = iter(float_leaves), iter(other_leaves)
        return jax.tree.unflatten(self.treedef, [next(it_f) if d else next(it_o) for d in self.differentiable])


def discrete_adjoint_solve(field: Callable, tableau: Tableau, y0, args, dt: float, steps: int, intervals: int):
    """Solve ``dy/dt = field(t, y, args)`` with ``intervals * steps`` fixed steps of ``dt`` from ``t = 0`` and
    return the states at ``t = 0, steps·dt, …, intervals·steps·dt`` (leading axis ``intervals + 1``), with the
    discrete adjoint as its derivative (w.r.t. ``y0`` and every floating-point leaf of ``args``; integer and
    boolean leaves, e.g. masks, get no cotangent).

    ``field`` must be a pure function of its arguments (no closed-over traced arrays: pass them in ``args``).
    Only reverse mode is defined (`jax.grad`, `jax.vjp`); `jax.vmap` works as usual."""
    if steps < 1 or intervals < 1:
        raise ValueError(f"need steps >= 1 and intervals >= 1; got steps={steps}, intervals={intervals}.")
    split = ArgsSplit.of(args)
    merge = split.merge

    def times(y, interval):
        dtype = jnp.result_type(jax.tree.leaves(y)[0])
        return (interval * steps + jnp.arange(steps, dtype=dtype)) * dt

    def interval_scan(y, interval, args, keep_starts: bool):
        def one_step(y, t):
            return _step(field, tableau, dt, t, y, args), (y if keep_starts else None)
        return jax.lax.scan(one_step, y, times(y, interval))

    def run(y0, float_leaves, other_leaves, keep_starts: bool):
        args = merge(float_leaves, other_leaves)

        def one_interval(y, interval):
            y, starts = interval_scan(y, interval, args, keep_starts)
            return y, (y, starts)

        _, (ends, starts) = jax.lax.scan(one_interval, y0, jnp.arange(intervals))
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, ends)
        return ys, starts  # starts: (intervals, steps, ...) when kept

    @jax.custom_vjp
    def solve(y0, float_leaves, other_leaves):
        return run(y0, float_leaves, other_leaves, keep_starts=False)[0]

    perturbed = []  # which floating-point leaves of args need a cotangent (known when the forward is traced)

    def solve_fwd(y0, float_leaves, other_leaves):  # (symbolic zeros: each leaf comes with .value, .perturbed)
        perturbed[:] = [leaf.perturbed for leaf in float_leaves]
        y0, float_leaves, other_leaves = jax.tree.map(lambda leaf: leaf.value, (y0, float_leaves, other_leaves),
                                                      is_leaf=lambda x: isinstance(x, CustomVJPPrimal))
        ys, starts = run(y0, float_leaves, other_leaves, keep_starts=True)
        return ys, (starts, float_leaves, other_leaves)

    def solve_bwd(residuals, ys_bar):
        starts, all_floats, other_leaves = residuals
        ys_bar = jax.tree.map(lambda z: jnp.zeros(z.aval.shape, z.aval.dtype) if isinstance(z, SymbolicZero) else z,
                              ys_bar, is_leaf=lambda z: isinstance(z, SymbolicZero))
        # only the leaves the caller differentiates (e.g. the weights, not the Laplacians) get a VJP
        float_leaves = [x for x, p in zip(all_floats, perturbed) if p]

        def grad_field(t, y, floats):  # the field as a function of the perturbed floating-point leaves alone
            it = iter(floats)
            return field(t, y, merge([next(it) if p else x for x, p in zip(all_floats, perturbed)], other_leaves))

        def one_interval(carry, inputs):
            y_bar, floats_bar = carry
            interval, interval_starts, save_bar = inputs

            def one_step(carry, step_inputs):
                y_bar, floats_bar = carry
                t, y = step_inputs
                y_bar, step_bar = _step_vjp(grad_field, tableau, dt, t, y, float_leaves, y_bar)
                return (y_bar, jax.tree.map(jnp.add, floats_bar, step_bar)), None

            (y_bar, floats_bar), _ = jax.lax.scan(one_step, (y_bar, floats_bar),
                                                  (times(y_bar, interval), interval_starts), reverse=True)
            return (jax.tree.map(jnp.add, y_bar, save_bar), floats_bar), None

        last = jax.tree.map(lambda a: a[-1], ys_bar)
        earlier = jax.tree.map(lambda a: a[:-1], ys_bar)  # the cotangent of the state at each interval's start
        floats_bar = jax.tree.map(jnp.zeros_like, float_leaves)
        (y0_bar, floats_bar), _ = jax.lax.scan(one_interval, (last, floats_bar),
                                               (jnp.arange(intervals), starts, earlier), reverse=True)
        it = iter(floats_bar)
        return y0_bar, [next(it) if p else None for p in perturbed], [None] * len(other_leaves)

    solve.defvjp(solve_fwd, solve_bwd, symbolic_zeros=True)
    float_leaves, other_leaves = split.split(jax.tree.leaves(args))
    return solve(y0, float_leaves, other_leaves)
