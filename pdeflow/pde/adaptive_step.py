"""The discrete adjoint of an adaptive explicit Runge–Kutta solve (diffrax's solver and PID controller).

Forward: diffrax's own loop written out in a ``lax.while_loop`` — the same ``solver.step``, the same
``controller.adapt_step_size``, the same clipping to the end time and the same interpolation at the save times as
`diffrax.diffeqsolve`, so the same values bit for bit — that also records the accepted steps: each one's start
and end time, start state and its stages' increments ``k_i = dt·f(t + c_i dt, Y_i)`` (the solver's dense output),
the last ``recorded_steps`` of them in a ring buffer. Backward: one reverse loop over the steps that rebuilds each
stage's input from the recorded increments, ``Y_i = y + Σ_{j<i} a_ij k_j`` (no field evaluation), and
back-propagates through the stages with `jax.vjp` of the field, stage by stage:

    k̄_i = b_i ȳ' + k̃_i + Σ_{j>i} a_ji Ȳ_j,   (Ȳ_i, θ̄_i) = vjp_f(t + c_i dt, Y_i)(dt·k̄_i),   ȳ = ȳ' + ỹ + Σ_i Ȳ_i

where ``k̃`` and ``ỹ`` are the cotangents that the interpolation at the save times inside the step sends to the
increments and the start state. A first-same-as-last method (tsit5, dopri5, bosh3) evaluates its first stage
once, as the previous step's last: its cotangent is carried to that stage.

Why: diffrax's recursive checkpointing stores each step's start and, in the backward pass, re-solves the step
(one field evaluation a stage) before its checkpointed stage loop evaluates each stage once more for its VJP:
three forward evaluations a stage in all. Recording the increments (one state a stage) removes the re-solve: two
forward evaluations and one VJP a stage. The step sizes are constants of the gradient, as in diffrax (whose PID
controller stops their gradient), so this is the gradient of diffrax's recursive adjoint, to float round-off.

A solve of more accepted steps than the buffer holds is differentiated in chunks of ``recorded_steps``, from the
end: the buffer holds the last chunk; each earlier one is recorded by solving again from ``t = 0`` up to its end
(as many extra forward solves, each cut short there, as there are chunks beyond the first).
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from pdeflow.pde.fixed_step import ArgsSplit, tableau_of

RECORDED_STEPS = 16  # accepted steps whose stages the buffer holds (memory: (1 + stages) states each)
_NEVER = 2**30  # an accepted-step count no solve reaches


def _clip_to_end(tprev, tnext, t1, t1_clip_floor, keep_step):
    """`diffrax._integrate._clip_to_end`: a step ending within 100 ULPs of ``t1`` ends at ``t1``."""
    clip = tnext > t1_clip_floor
    return jnp.where(clip, jnp.where(keep_step, t1, tprev + 0.5 * (t1 - tprev)), tnext)


def empty_record(solver, y0, recorded: int, time_dtype) -> dict:
    """The ring buffer of ``recorded`` accepted steps: ``t0, t1 (R,)``, ``y (R, *y0.shape)``, ``k (R, S,
    *y0.shape)``."""
    stages = len(tableau_of(solver).b)
    return {"t0": jnp.zeros((recorded,), time_dtype), "t1": jnp.zeros((recorded,), time_dtype),
            "y": jnp.zeros((recorded,) + y0.shape, y0.dtype),
            "k": jnp.zeros((recorded, stages) + y0.shape, y0.dtype)}


def _forward(field: Callable, solver, controller, y0, args, t_end: float, save_times, dt0: float, max_steps: int,
             record: dict, first=0, end=_NEVER, stop=_NEVER):
    """diffrax's adaptive loop with ``SaveAt(ts=save_times)``, recording the accepted steps ``first <= a < end`` in
    ``record`` (`empty_record`; accepted step ``a`` in slot ``a mod R``; ``None``: nothing recorded), and stopping
    once ``stop`` steps are accepted (``stop = 0``: no step at all, ``record`` returned as it is).

    Returns ``(ys (T, *y0.shape), ok, num_steps, record)``: ``record`` with ``count`` (the accepted steps) and
    ``save_step (T,)`` (the step each save time was interpolated in; −1 for a save time the solve did not reach)
    added."""
    terms = diffrax.ODETerm(field)
    time_dtype = time_dtype_of(t_end, dt0, save_times)
    t0, t1 = jnp.asarray(0.0, time_dtype), jnp.asarray(t_end, time_dtype)
    ts = jnp.asarray(save_times, time_dtype)
    dt0 = jnp.asarray(dt0, time_dtype)
    t1_clip_floor = t1
    for _ in range(100):
        t1_clip_floor = eqxi.prevbefore(t1_clip_floor)
    error_order = solver.error_order(terms)
    tnext, controller_state = controller.init(terms, t0, t1, y0, dt0, args, solver.func, error_order)
    tnext = jnp.minimum(tnext, t1)
    solver_state = solver.init(terms, t0, tnext, y0, args)
    recorded = None if record is None else record["t0"].shape[0]
    count = len(ts)
    init = {"tprev": t0, "tnext": tnext, "y": y0, "solver_state": solver_state, "controller_state": controller_state,
            "num_steps": jnp.asarray(0), "accepted": jnp.asarray(0), "good": jnp.asarray(True),
            "save_index": jnp.asarray(0), "ys": jnp.full((count,) + y0.shape, jnp.inf, y0.dtype),
            "save_step": jnp.full((count,), -1, jnp.int32), "record": record}

    def cond(state):
        return (state["tprev"] < t1) & state["good"] & (state["num_steps"] < max_steps) & (state["accepted"] < stop)

    def body(state):
        y1, y_error, dense_info, solver_state, solver_result = solver.step(
            terms, state["tprev"], state["tnext"], state["y"], args, state["solver_state"], False)
        y_error = jnp.where(jnp.isnan(y_error), jnp.inf, y_error)
        keep, tprev, tnext, _, controller_state, controller_result = controller.adapt_step_size(
            state["tprev"], state["tnext"], state["y"], y1, args, y_error, error_order, state["controller_state"])
        tprev = jnp.minimum(tprev, t1)
        tnext = _clip_to_end(tprev, tnext, t1, t1_clip_floor, keep)
        good = (state["good"] & ((solver_result == diffrax.RESULTS.successful) | ~keep)
                & (controller_result == diffrax.RESULTS.successful))
        record = state["record"]
        if record is not None:
            slot = state["accepted"] % recorded
            write = keep & (state["accepted"] >= first) & (state["accepted"] < end)
            new = {"t0": state["tprev"], "t1": state["tnext"], "y": state["y"], "k": dense_info["k"]}
            record = {name: buffer.at[slot].set(jnp.where(write, new[name], buffer[slot]))
                      for name, buffer in record.items()}
        interpolation = solver.interpolation_cls(t0=state["tprev"], t1=state["tnext"], **dense_info)

        def save_cond(saving):
            index, _, _ = saving
            return keep & (ts[jnp.minimum(index, count - 1)] <= state["tnext"]) & (index < count)

        def save_body(saving):
            index, ys, save_step = saving
            return (index + 1, ys.at[index].set(interpolation.evaluate(ts[index])),
                    save_step.at[index].set(state["accepted"]))

        save_index, ys, save_step = jax.lax.while_loop(save_cond, save_body,
                                                       (state["save_index"], state["ys"], state["save_step"]))
        return {"tprev": tprev, "tnext": tnext, "y": jnp.where(keep, y1, state["y"]),
                "solver_state": jax.tree.map(lambda a, b: jnp.where(keep, a, b), solver_state,
                                             state["solver_state"]),
                "controller_state": controller_state, "num_steps": state["num_steps"] + 1,
                "accepted": state["accepted"] + keep.astype(state["accepted"].dtype), "good": good,
                "save_index": save_index, "ys": ys, "save_step": save_step, "record": record}

    final = jax.lax.while_loop(cond, body, init)
    ys = final["ys"]
    ok = final["good"] & (final["tprev"] >= t1) & jnp.all(jnp.isfinite(ys))
    record = {**(final["record"] or {}), "count": final["accepted"], "save_step": final["save_step"]}
    return ys, ok, final["num_steps"], record


def time_dtype_of(t_end: float, dt0: float, save_times):
    """The solve's time dtype, as `diffrax.diffeqsolve` picks it."""
    return jnp.result_type(0.0, t_end, dt0, save_times)


def adaptive_discrete_solve(field: Callable, solver, controller, y0, args, t_end: float, save_times, dt0: float,
                            max_steps: int, recorded_steps: int = RECORDED_STEPS):
    """Solve ``dy/dt = field(t, y, args)`` from ``t = 0`` to ``t_end`` with diffrax's explicit Runge–Kutta
    ``solver`` and adaptive ``controller`` (a `diffrax.PIDController`) and return ``(ys, ok, num_steps)``: the
    states at ``save_times`` (leading axis ``len(save_times)``), whether the solve reached ``t_end`` with finite
    values within ``max_steps`` steps, and the steps taken (accepted and rejected) — what `diffrax.diffeqsolve`
    returns for the same settings — with the discrete adjoint as the derivative of ``ys`` (w.r.t. ``y0`` and every
    floating-point leaf of ``args``). ``y0`` is one array (e.g. ``(B, N, r)``); the buffer holds the stages of
    ``recorded_steps`` accepted steps (more are differentiated in chunks, each recorded by solving again).

    ``field`` must be a pure function of its arguments (no closed-over traced arrays: pass them in ``args``).
    Only reverse mode is defined (`jax.grad`, `jax.vjp`)."""
    if recorded_steps < 1:
        raise ValueError(f"need recorded_steps >= 1; got {recorded_steps}.")
    if not hasattr(y0, "shape"):
        raise TypeError(f"the adaptive discrete adjoint solves one array state; got {type(y0).__name__}: use "
                        "adjoint='recursive' for a pytree state.")
    table = tableau_of(solver)
    fsal = bool(getattr(solver.tableau, "fsal", False))
    stages = len(table.b)
    split = ArgsSplit.of(args)
    times = time_dtype_of(t_end, dt0, save_times)

    def run(y0, float_leaves, other_leaves, record, **window):
        return _forward(field, solver, controller, y0, split.merge(float_leaves, other_leaves), t_end, save_times,
                        dt0, max_steps, record, **window)

    @jax.custom_vjp
    def solve(y0, float_leaves, other_leaves):
        ys, ok, num_steps, _ = run(y0, float_leaves, other_leaves, None)  # nothing recorded without a gradient
        return ys, ok, num_steps

    perturbed = []  # which floating-point leaves of args need a cotangent (known when the forward is traced)

    def solve_fwd(y0, float_leaves, other_leaves):
        perturbed[:] = [leaf.perturbed for leaf in float_leaves]
        y0, float_leaves, other_leaves = jax.tree.map(lambda leaf: leaf.value, (y0, float_leaves, other_leaves),
                                                      is_leaf=lambda x: isinstance(x, CustomVJPPrimal))
        ys, ok, num_steps, record = run(y0, float_leaves, other_leaves,
                                        empty_record(solver, y0, recorded_steps, times))
        return (ys, ok, num_steps), (y0, record, float_leaves, other_leaves)

    def solve_bwd(residuals, cotangents):
        y0, record, all_floats, other_leaves = residuals
        ys_bar = cotangents[0]
        if isinstance(ys_bar, SymbolicZero):
            ys_bar = jnp.zeros(ys_bar.aval.shape, ys_bar.aval.dtype)
        float_leaves = [x for x, p in zip(all_floats, perturbed) if p]
        ts = jnp.asarray(save_times, times)
        buffers = {name: record[name] for name in ("t0", "t1", "y", "k")}

        def grad_field(t, y, floats):  # the field as a function of the perturbed floating-point leaves alone
            it = iter(floats)
            return field(t, y, split.merge([next(it) if p else x for x, p in zip(all_floats, perturbed)],
                                           other_leaves))

        def add(a, b):
            return jax.tree.map(jnp.add, a, b)

        def one_step(n, buffers, state_bar, first_bar, floats_bar):
            """Step ``n``'s reverse pass: ``(ȳ_n, f̄ at its start, θ̄)`` from ``ȳ_{n+1}`` and the cotangent of ``f``
            at its end (carried from step ``n + 1``'s first stage)."""
            slot = n % recorded_steps
            t0, t1, y, k = (buffers[name][slot] for name in ("t0", "t1", "y", "k"))
            dt = t1 - t0

            # the save times interpolated in this step (usually one or two): their cotangents to the start state,
            # the step's result and the increments, one interpolation VJP each
            def interpolation_vjp(i, bars):
                def one(bars):
                    y_end = y + sum(table.b[s] * k[s] for s in range(stages) if table.b[s] != 0)
                    _, pullback = jax.vjp(lambda y0_, y1_, k_: solver.interpolation_cls(
                        t0=t0, t1=t1, y0=y0_, y1=y1_, k=k_).evaluate(ts[i]), y, y_end, k)
                    return add(bars, pullback(ys_bar[i]))
                return jax.lax.cond(record["save_step"][i] == n, one, lambda bars: bars, bars)

            start_bar, end_bar, k_tilde = jax.lax.fori_loop(
                0, ts.shape[0], interpolation_vjp, (jnp.zeros_like(y), jnp.zeros_like(y), jnp.zeros_like(k)))
            end_bar = end_bar + state_bar  # ȳ' of the step's result
            stage_bars = [None] * stages
            y_bar = end_bar + start_bar
            for i in reversed(range(stages)):
                k_bar = table.b[i] * end_bar + k_tilde[i]
                for j in range(i + 1, stages):
                    if table.a[j][i] != 0 and stage_bars[j] is not None:
                        k_bar = k_bar + table.a[j][i] * stage_bars[j]
                f_bar = dt * k_bar
                if fsal and i == stages - 1:
                    f_bar = f_bar + first_bar
                if fsal and i == 0:
                    first_bar = f_bar  # stage 0 was the previous step's last: carried to it
                    continue
                stage = y + sum(table.a[i][j] * k[j] for j in range(i) if table.a[i][j] != 0)
                _, pull = jax.vjp(lambda u, p, ti=t0 + table.c[i] * dt: grad_field(ti, u, p), stage, float_leaves)
                stage_bars[i], p_bar = pull(f_bar)
                y_bar = y_bar + stage_bars[i]
                floats_bar = add(floats_bar, p_bar)
            return y_bar, first_bar, floats_bar

        def one_chunk(carry):
            """The steps ``[max(end − R, 0), end)`` in reverse; recorded again first unless the buffer holds them
            (the last chunk, recorded by the forward pass)."""
            end, buffers, state_bar, first_bar, floats_bar = carry
            start = jnp.maximum(end - recorded_steps, 0)
            stop = jnp.where(end == record["count"], 0, end)  # 0: no step solved, the buffer kept as it is
            _, _, _, rerecorded = run(y0, all_floats, other_leaves, buffers, first=start, end=end, stop=stop)
            buffers = {name: rerecorded[name] for name in buffers}

            def step_back(inner):
                n, state_bar, first_bar, floats_bar = inner
                return (n - 1, *one_step(n, buffers, state_bar, first_bar, floats_bar))

            _, state_bar, first_bar, floats_bar = jax.lax.while_loop(
                lambda inner: inner[0] >= start, step_back, (end - 1, state_bar, first_bar, floats_bar))
            return start, buffers, state_bar, first_bar, floats_bar

        zeros = jnp.zeros_like(y0)
        _, _, y_bar, first_bar, floats_bar = jax.lax.while_loop(
            lambda carry: carry[0] > 0, one_chunk,
            (record["count"], buffers, zeros, zeros, jax.tree.map(jnp.zeros_like, float_leaves)))
        if fsal:  # the first step's first stage: f(0, y0), evaluated before the loop
            _, pull = jax.vjp(lambda u, p: grad_field(jnp.zeros((), times), u, p), y0, float_leaves)
            first_y_bar, p_bar = pull(first_bar)
            y_bar = y_bar + first_y_bar
            floats_bar = add(floats_bar, p_bar)
        it = iter(floats_bar)
        return y_bar, [next(it) if p else None for p in perturbed], [None] * len(other_leaves)

    solve.defvjp(solve_fwd, solve_bwd, symbolic_zeros=True)
    float_leaves, other_leaves = split.split(jax.tree.leaves(args))
    return solve(y0, float_leaves, other_leaves)
