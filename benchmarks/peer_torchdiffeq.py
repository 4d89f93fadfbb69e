"""pdeflow against the peer: the identical attention-PDE vector field in PyTorch, solved with torchdiffeq.

Same weights, same initial state, same solver (dopri5 adaptive with pdeflow's default tolerances and first
step; Kutta's 3/8-rule rk4 with fixed steps) and the same loss. Before anything is timed the two solutions,
and for the fixed-step solver the two gradients, are compared; a mismatch stops the run. Then each case is
timed in steady state (compile / first call reported apart) and the pdeflow/peer speed ratio printed:

    forward                  pdeflow solve (diffrax's loop)     vs  torchdiffeq.odeint
    forward          discrete (fixed steps: pdeflow's own scan) vs  torchdiffeq.odeint
    forward+backward         RecursiveCheckpointAdjoint         vs  odeint + autograd through the solver
    forward+backward         stored (fixed steps: lax.scan)     vs  odeint + autograd through the solver
    forward+backward         discrete (fixed steps: custom_vjp) vs  odeint + autograd through the solver
    forward+backward         BacksolveAdjoint                   vs  odeint_adjoint

Every forward+backward case also prints its overhead: solve fwd+bwd time / (field evaluations x one field+VJP
time), medians over the repeats, for pdeflow and for the peer (1.0 = the backward costs no more than its field
evaluations' VJPs; what is above is the solver loop's own work), and every forward its solve time / (field
evaluations x one field's time). Each run's headline ratios are appended to
``benchmarks/results/history.jsonl`` (``python -m benchmarks.history`` draws them).

The peer is benchmark-only (never a dependency of the library):

    pip install torch==2.13.0 torchdiffeq      # 2.13.0 is the CPU build already on this machine's disk
    python -m benchmarks.peer_torchdiffeq                       # default grid, writes a JSON to results/
    python -m benchmarks.peer_torchdiffeq --sizes 32,128,384,12,6 --repeats 3
    python -m benchmarks.peer_torchdiffeq --sizes 32,128,384,12,6 --field-only   # one field evaluation, no solver
    python -m benchmarks.peer_torchdiffeq --sizes 32,128,384,12,6 --solvers rk4 --forward-only --repeats 7
    python -m benchmarks.peer_torchdiffeq --solvers rk4 --field-backward custom  # pdeflow's hand-written backward

Both sides use every core of the machine (torch.set_num_threads(os.cpu_count()); XLA's CPU thread pool).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import compiled_memory_bytes, machine_label, matmul_precision, write_result
from benchmarks.solver_throughput import benchmark_config
from benchmarks.torch_peer import TorchAttentionField, synchronize, torch, torchdiffeq
from pdeflow.pde import SolverConfig, SurrogateConfig, attention_pde, init_surrogate
from pdeflow.pde.solve import STAGES, solve
from pdeflow.surrogate import token_laplacians

DEFAULT_SIZES = ["8,32,64,12,6", "32,48,64,12,6", "32,128,384,12,6"]  # B, N, r, H, L


@dataclasses.dataclass(frozen=True)
class Case:
    solver: str  # "dopri5" (adaptive) or "rk4" (fixed steps)
    dt0: float = 0.25
    rtol: float = SolverConfig.rtol
    atol: float = SolverConfig.atol

    @property
    def adaptive(self) -> bool:
        return self.solver == "dopri5"

    def pdeflow(self, adjoint: str) -> SolverConfig:
        return SolverConfig(self.solver, adaptive=self.adaptive, dt0=self.dt0, rtol=self.rtol, atol=self.atol,
                            adjoint=adjoint)

    def torch_options(self) -> dict:
        if self.adaptive:
            return {"method": "dopri5", "rtol": self.rtol, "atol": self.atol, "options": {"first_step": self.dt0}}
        return {"method": "rk4", "options": {"step_size": self.dt0}}


def perturbed_params(config: SurrogateConfig, seed: int = 0) -> dict:
    """Initial parameters with every leaf moved off its initial value (zeros included), so the comparison
    exercises every weight of the field."""
    params = init_surrogate(jax.random.PRNGKey(seed), config)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    leaves = [leaf + 0.05 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, leaves)


def make_problem(batch: int, n: int, width: int, heads: int, layers: int, seed: int = 0,
                 field_backward: str = SurrogateConfig.field_backward):
    """``(config, params, u0, mask, laplacians, probe)`` of one size; ``field_backward`` is pdeflow's backward of the
    field (`SurrogateConfig.field_backward`: autodiff's VJP or the hand-written one), the peer's is autograd's."""
    config = dataclasses.replace(benchmark_config(width, heads, layers), field_backward=field_backward)
    params = perturbed_params(config, seed)
    rng = np.random.default_rng(seed)
    u0 = rng.normal(size=(batch, n, width)).astype(np.float32)
    lengths = rng.integers(max(n // 2, 1), n + 1, size=batch)
    lengths[0] = n
    mask = np.arange(n)[None, :] < lengths[:, None]
    u0 = u0 * mask[..., None]
    probe = rng.normal(size=(layers + 1, batch, n, width)).astype(np.float32)  # loss = <probe, states>
    return config, params, u0, mask, np.asarray(token_laplacians(jnp.asarray(mask))), probe


def pdeflow_functions(config, solver: SolverConfig, u0, mask, laplacians, probe):
    """Jitted forward ``(states, ok, steps)`` and value-and-grad ``((loss, (ok, steps)), grads)`` of the solve,
    through `pdeflow.pde.solve.solve` and the library's batched field, as a fit runs them: the batch (initial
    state, Laplacians, mask) and the probe are arguments of the compiled function, not constants XLA could fold
    into it. Both returned functions take the parameters only."""
    save_times = jnp.arange(config.num_layers + 1, dtype=jnp.float32)
    field = lambda t, u, args: attention_pde.batch_vector_field(config, t, u, args)  # noqa: E731
    data = tuple(jnp.asarray(x) for x in (u0, laplacians, mask, probe))

    def states(params, data):
        y0, laplacians, mask, _ = data
        return solve(field, y0, (params, laplacians, mask), float(config.num_layers), save_times, solver)

    def loss(params, data):
        ys, ok, steps = states(params, data)
        return jnp.sum(ys * data[3]), (ok, steps)

    states_jit, grad_jit = jax.jit(states), jax.jit(jax.value_and_grad(loss, has_aux=True))
    grad_fn = lambda params: grad_jit(params, data)  # noqa: E731
    grad_fn.memory = lambda params: compiled_memory_bytes(grad_jit, params, data)  # XLA's planned peak
    return (lambda params: states_jit(params, data)), grad_fn


def torch_functions(field: TorchAttentionField, case: Case, u0, probe, adjoint: bool):
    times = torch.arange(field.config.num_layers + 1, dtype=torch.float32, device=field.device)
    y0 = torch.from_numpy(u0).to(field.device)
    probe_t = torch.from_numpy(probe).to(field.device)
    options = case.torch_options()
    if adjoint:
        options = {**options, "adjoint_params": tuple(field.parameters())}
        if case.adaptive:
            options["adjoint_options"] = {"first_step": case.dt0}
        else:
            options["adjoint_options"] = {"step_size": case.dt0}

    def forward():
        with torch.no_grad():
            return torchdiffeq.odeint(field, y0, times, **case.torch_options())

    def forward_backward():
        field.zero_grad(set_to_none=True)
        solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
        ys = solve(field, y0, times, **options)
        loss = torch.sum(ys * probe_t)
        loss.backward()
        return loss

    return forward, forward_backward


def timed(fn, repeats: int, block=lambda out: out):
    """``(first call, best of the repeats)`` in seconds."""
    first, best, _ = timed_with_median(fn, repeats, block)
    return first, best  # best of the repeats: this machine's neighbours only ever slow it down


def timed_with_median(fn, repeats: int, block=lambda out: out):
    """``(first call, best, median of the repeats)`` in seconds."""
    start = time.perf_counter()
    block(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return first, float(np.min(times)), float(np.median(times))


def torch_grads(field: TorchAttentionField) -> dict:
    """Gradients of the parameters the field uses (the projection and readout are not part of the field)."""
    return {name: getattr(field, attr).grad.detach().cpu().numpy() for name, attr in field.names.items()
            if getattr(field, attr).grad is not None}


def flat_gradients(grads) -> dict:
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]}


def max_rel_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max() / (np.abs(b[k]).max() + 1e-12)) for k in b)


def compare(size: str, case: Case, repeats: int, field_vjp_s: dict | None = None,
            torch_device: str = "cpu", field_backward: str = SurrogateConfig.field_backward,
            field_s: dict | None = None, forward_only: bool = False) -> list[dict]:
    """Solutions and gradients checked against the peer, then each mode timed. ``field_vjp_s``: the median time
    of one field + VJP, ``{"pdeflow": s, "torch": s}`` (`compare_field`), for the forward+backward overheads;
    ``field_s``: of one field evaluation, for the forwards' overheads (solve time / (evaluations x field time));
    ``forward_only``: time the forwards alone (the gradients are still checked against the peer's first).
    ``torch_device``: where the peer runs (pdeflow runs on JAX's default device); ``field_backward``: pdeflow's
    backward of the field (`make_problem`)."""
    batch, n, width, heads, layers = (int(x) for x in size.split(","))
    config, params, u0, mask, laplacians, probe = make_problem(batch, n, width, heads, layers,
                                                               field_backward=field_backward)
    field = TorchAttentionField(params, config, laplacians, mask, torch_device)
    torch_block = lambda out: synchronize(torch_device)  # noqa: E731
    rows = []
    # -- the same solution (and, for fixed steps, the same gradient) before any timing
    fwd_jax, grad_jax = pdeflow_functions(config, case.pdeflow("recursive"), u0, mask, laplacians, probe)
    start = time.perf_counter()
    ys_jax, ok, steps = jax.block_until_ready(fwd_jax(params))
    first_forward = time.perf_counter() - start
    if not bool(ok):
        raise SystemExit(f"pdeflow's solve failed for {size} {case}")
    fwd_torch, fb_torch = torch_functions(field, case, u0, probe, adjoint=False)
    field.evaluations = 0
    ys_torch = fwd_torch().cpu().numpy()
    torch_evaluations = field.evaluations
    scale = float(np.abs(ys_torch).max())
    solution_diff = float(np.abs(np.asarray(ys_jax) - ys_torch).max())
    start = time.perf_counter()
    (_, _), g_jax = jax.block_until_ready(grad_jax(params))
    first_gradient = time.perf_counter() - start
    fb_torch()
    g_torch = torch_grads(field)
    g_flat = flat_gradients(g_jax)
    grad_rel_diff = max_rel_difference(g_flat, g_torch)
    if not case.adaptive and (solution_diff > 1e-4 * scale or grad_rel_diff > 1e-3):
        raise SystemExit(f"pdeflow and torchdiffeq disagree on {size} {case.solver}: max |Δy| = {solution_diff:.2e} "
                         f"(scale {scale:.2f}), max relative gradient difference {grad_rel_diff:.2e}")
    print(f"[{size} {case.solver}{' adaptive' if case.adaptive else f' dt={case.dt0}'}] max |y_pdeflow - y_torch| = "
          f"{solution_diff:.2e} (max |y| {scale:.2f}); gradients max rel diff {grad_rel_diff:.2e}; steps: pdeflow "
          f"{int(steps)}, torchdiffeq {torch_evaluations} field evaluations", flush=True)
    common = {"B": batch, "N": n, "r": width, "H": heads, "L": layers, "field_backward": field_backward,
              "solver": case.solver,
              "adaptive": case.adaptive, "dt0": case.dt0, "rtol": case.rtol, "atol": case.atol,
              "max_abs_solution_diff": solution_diff, "max_abs_solution": scale,
              "max_rel_gradient_diff": grad_rel_diff, "pdeflow_steps": int(steps),
              "pdeflow_field_evaluations": int(steps) * STAGES[case.solver],
              "torch_field_evaluations_forward": torch_evaluations}
    # -- timing
    block = jax.block_until_ready
    modes = [("forward", None), ("forward+backward", "recursive"), ("forward+backward", "backsolve")]
    if not case.adaptive:  # the stored and discrete adjoints (a scan over fixed steps) need fixed steps
        modes[2:2] = [("forward+backward", "stored"), ("forward+backward", "discrete")]
        # the discrete adjoint's forward is pdeflow's own scan over the steps, the stages written out (diffrax's
        # loop, which the other adjoints' forward runs, keeps the stages in a buffer and sums them as a product)
        modes[1:1] = [("forward", "discrete")]
    if forward_only:
        modes = [(mode, adjoint) for mode, adjoint in modes if mode == "forward"]
    evaluations = {"pdeflow": int(steps) * STAGES[case.solver], "torch": torch_evaluations}
    for mode, adjoint in modes:
        extra = {}
        if mode == "forward":
            forward = fwd_jax
            jax_first = first_forward  # compile + first call, timed at the comparison above
            if adjoint is not None:  # the same fixed steps through another path: checked against the peer too
                forward, _ = pdeflow_functions(config, case.pdeflow(adjoint), u0, mask, laplacians, probe)
                start = time.perf_counter()
                ys_other = np.asarray(jax.block_until_ready(forward(params))[0])
                jax_first = time.perf_counter() - start
                extra["max_abs_solution_diff"] = float(np.abs(ys_other - ys_torch).max())
                if extra["max_abs_solution_diff"] > 1e-4 * scale:
                    raise SystemExit(f"pdeflow's {adjoint} solve and torchdiffeq disagree on {size} {case.solver}: "
                                     f"max |Δy| = {extra['max_abs_solution_diff']:.2e} (scale {scale:.2f})")
            _, jax_s, jax_median = timed_with_median(lambda: forward(params), repeats, block)  # noqa: B023
            torch_first, torch_s, torch_median = timed_with_median(fwd_torch, repeats, torch_block)
            peer = "odeint"
            if field_s is not None:  # the solver loop's own cost, above its field evaluations
                extra["pdeflow_overhead"] = jax_median / (evaluations["pdeflow"] * field_s["pdeflow"])
                extra["torch_overhead"] = torch_median / (evaluations["torch"] * field_s["torch"])
        else:
            if adjoint == "recursive":
                _, jax_s, jax_median = timed_with_median(lambda: grad_jax(params), repeats, block)
                jax_first, memory = first_gradient, grad_jax.memory(params)
            else:
                _, other = pdeflow_functions(config, case.pdeflow(adjoint), u0, mask, laplacians, probe)
                start = time.perf_counter()
                (_, _), g_other = jax.block_until_ready(other(params))
                jax_first = time.perf_counter() - start
                # the same exact gradient as autodiff through diffrax's solve (backsolve: to the solver's accuracy)
                extra["max_rel_gradient_diff_vs_recursive"] = max_rel_difference(flat_gradients(g_other), g_flat)
                _, jax_s, jax_median = timed_with_median(lambda: other(params), repeats, block)  # noqa: B023
                memory = other.memory(params)
            extra["pdeflow_compiled_memory_bytes"] = memory
            _, fb = torch_functions(field, case, u0, probe, adjoint=adjoint == "backsolve")
            torch_first, torch_s, torch_median = timed_with_median(fb, repeats, torch_block)
            peer = "odeint_adjoint" if adjoint == "backsolve" else "odeint (autograd)"
            if field_vjp_s is not None:  # the solver loop's own cost, above its field evaluations' VJPs
                extra["pdeflow_overhead"] = jax_median / (evaluations["pdeflow"] * field_vjp_s["pdeflow"])
                extra["torch_overhead"] = torch_median / (evaluations["torch"] * field_vjp_s["torch"])
        row = {**common, "mode": mode, "pdeflow_adjoint": adjoint, "peer": peer,
               "pdeflow_compile_and_first_s": jax_first, "pdeflow_steady_s": jax_s, "pdeflow_median_s": jax_median,
               "torch_first_s": torch_first, "torch_steady_s": torch_s, "torch_median_s": torch_median,
               "speedup_pdeflow_over_torch": torch_s / jax_s, "speedup_median": torch_median / jax_median, **extra}
        rows.append(row)
        overhead = (f"  overhead pdeflow {extra['pdeflow_overhead']:4.2f} peer {extra['torch_overhead']:4.2f}"
                    if "pdeflow_overhead" in extra else "")
        memory = (f"  XLA peak {extra['pdeflow_compiled_memory_bytes']['total'] / 2**20:6.0f} MiB"
                  if extra.get("pdeflow_compiled_memory_bytes") else "")
        print(f"  {mode:17s} {adjoint or '':9s} vs {peer:18s} pdeflow {jax_s * 1e3:9.1f} ms (median "
              f"{jax_median * 1e3:7.1f}, first {jax_first:5.1f}s)  torchdiffeq {torch_s * 1e3:9.1f} ms (median "
              f"{torch_median * 1e3:7.1f})   speed-up x{torch_s / jax_s:5.2f} (medians "
              f"x{torch_median / jax_median:5.2f}){overhead}{memory}", flush=True)
    return rows


def compare_field(size: str, repeats: int, t: float = 2.5, torch_device: str = "cpu",
                  field_backward: str = SurrogateConfig.field_backward) -> list[dict]:
    """One evaluation of the field, and the field with its vector-Jacobian product (the cotangent of the
    state and of every weight), outside any solver: the framework's own cost, with no solver overhead."""
    batch, n, width, heads, layers = (int(x) for x in size.split(","))
    config, params, u0, mask, laplacians, probe = make_problem(batch, n, width, heads, layers,
                                                               field_backward=field_backward)
    field = TorchAttentionField(params, config, laplacians, mask, torch_device)
    torch_block = lambda out: synchronize(torch_device)  # noqa: E731
    # the batch and the cotangent are arguments of the compiled functions, not constants XLA could fold
    data = (jnp.float32(t), jnp.asarray(laplacians), jnp.asarray(mask), jnp.asarray(probe[0]))
    u_j = jnp.asarray(u0)

    def evaluate(params, u, data):
        time, laplacians, mask, _ = data
        return attention_pde.batch_vector_field(config, time, u, (params, laplacians, mask))

    evaluate_jit = jax.jit(evaluate)
    vjp_jit = jax.jit(lambda params, u, data: jax.vjp(lambda p, x: evaluate(p, x, data), params, u)[1](data[3]))
    fwd_jax = lambda params, u: evaluate_jit(params, u, data)  # noqa: E731
    vjp_jax = lambda params, u: vjp_jit(params, u, data)  # noqa: E731
    time_t, g_t = torch.tensor(t, device=field.device), torch.from_numpy(probe[0]).to(field.device)
    u_t = torch.from_numpy(u0).to(field.device).requires_grad_(True)

    def fwd_torch():
        with torch.no_grad():
            return field(time_t, u_t)

    def vjp_torch():
        field.zero_grad(set_to_none=True)
        u_t.grad = None
        field(time_t, u_t).backward(g_t)
        return u_t.grad

    value_torch = fwd_torch().cpu().numpy()
    value_diff = float(np.abs(np.asarray(fwd_jax(params, u_j)) - value_torch).max())
    state_grad = vjp_torch().cpu().numpy()
    grad_diff = float(np.abs(np.asarray(vjp_jax(params, u_j)[1]) - state_grad).max() / np.abs(state_grad).max())
    if value_diff > 1e-4 * float(np.abs(value_torch).max()) or grad_diff > 1e-4:
        raise SystemExit(f"the two fields disagree at {size}: max |Δf| = {value_diff:.2e}, relative state-gradient "
                         f"difference {grad_diff:.2e}")
    print(f"[{size} field at t={t}] max |f_pdeflow - f_torch| = {value_diff:.2e}; state gradients max rel diff "
          f"{grad_diff:.2e}", flush=True)
    rows, block = [], jax.block_until_ready
    for mode, jax_fn, torch_fn in (("field", lambda: fwd_jax(params, u_j), fwd_torch),
                                   ("field+vjp", lambda: vjp_jax(params, u_j), vjp_torch)):
        jax_first, jax_s, jax_median = timed_with_median(jax_fn, max(repeats, 10), block)
        torch_first, torch_s, torch_median = timed_with_median(torch_fn, max(repeats, 10), torch_block)
        rows.append({"B": batch, "N": n, "r": width, "H": heads, "L": layers, "field_backward": field_backward,
                     "mode": mode, "t": t,
                     "max_abs_field_diff": value_diff, "max_rel_state_gradient_diff": grad_diff,
                     "pdeflow_compile_and_first_s": jax_first, "pdeflow_steady_s": jax_s,
                     "pdeflow_median_s": jax_median, "torch_first_s": torch_first, "torch_steady_s": torch_s,
                     "torch_median_s": torch_median, "speedup_pdeflow_over_torch": torch_s / jax_s})
        print(f"  {mode:17s} one evaluation: pdeflow {jax_s * 1e3:9.1f} ms  torch {torch_s * 1e3:9.1f} ms   "
              f"speed-up x{torch_s / jax_s:5.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, help="B,N,r,H,L for each case")
    parser.add_argument("--solvers", nargs="*", default=["dopri5", "rk4"], choices=["dopri5", "rk4"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--field-only", action="store_true",
                        help="time one evaluation of the field (and with its VJP) only, no solves")
    parser.add_argument("--forward-only", action="store_true",
                        help="time the solves' forwards only (the gradients are still checked against the peer's)")
    parser.add_argument("--torch-device", default="cpu",
                        help="where the peer runs: cpu, or cuda on a GPU machine (pdeflow runs on JAX's default "
                             "device, which is the GPU there)")
    parser.add_argument("--field-backward", default=SurrogateConfig.field_backward,
                        choices=list(attention_pde.FIELD_BACKWARDS),
                        help="pdeflow's backward of the field: autodiff's VJP (SurrogateConfig's default) or the "
                             "hand-written one (the default preset's); the peer's is autograd's either way")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    label = machine_label()
    label.update(torch=torch.__version__, torchdiffeq=torchdiffeq.__version__, torch_threads=torch.get_num_threads(),
                 torch_device=args.torch_device)
    if args.torch_device.startswith("cuda"):  # a GPU: say which float32 matmuls each side runs (TF32 or full)
        label.update(torch_device_name=torch.cuda.get_device_name(args.torch_device),
                     torch_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                     jax_default_matmul_precision=matmul_precision())
    print(f"{label['device']}  jax {label['jax']}  torch {torch.__version__}  torchdiffeq {torchdiffeq.__version__}  "
          f"threads {torch.get_num_threads()}  pdeflow's field backward: {args.field_backward}")
    rows = []
    for size in args.sizes:
        field_rows = compare_field(size, args.repeats, torch_device=args.torch_device,
                                   field_backward=args.field_backward)
        rows += field_rows
        vjp = next(row for row in field_rows if row["mode"] == "field+vjp")
        field_vjp_s = {"pdeflow": vjp["pdeflow_median_s"], "torch": vjp["torch_median_s"]}
        one = next(row for row in field_rows if row["mode"] == "field")
        field_s = {"pdeflow": one["pdeflow_median_s"], "torch": one["torch_median_s"]}
        for solver in [] if args.field_only else args.solvers:
            rows += compare(size, Case(solver), args.repeats, field_vjp_s, args.torch_device, args.field_backward,
                            field_s, args.forward_only)
        path = write_result("peer_torchdiffeq", label, rows, args.out)  # after each size: a late failure keeps it
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
