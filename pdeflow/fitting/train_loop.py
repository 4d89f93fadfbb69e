"""One optimiser step and one loop around it, shared by every fit and trainer in pdeflow.

`make_train_step` turns a loss and an optax transformation into a jit-compiled step
``(params, opt_state, *batch) -> (params, opt_state, info)``; `gradient_step` is the same step un-jitted, for use
inside a traced function (a `jax.lax.scan`, a `jax.vmap`). `train_loop` runs steps with the hooks the fits need:
evaluate every ``k`` steps, checkpoint every ``k`` steps and at the end, stop early, show a progress bar (and log
one line per evaluation to the ``pdeflow`` logger, for runs whose output goes to a file), and on SIGINT (Ctrl-C)
finish the step under way, checkpoint it and raise ``KeyboardInterrupt``.

This module sits in `pdeflow.fitting`, beside `pdeflow.fitting.optim`, rather than in `pdeflow.train`: the surrogate
fit (`pdeflow.fitting.fit`) uses it too, and importing the `pdeflow.train` package would load every transformer
trainer with it (`pdeflow.fitting` itself imports none of its modules).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

_LOG = logging.getLogger(__name__)


def gradient_step(loss_fn: Callable, optimizer: optax.GradientTransformation, params, opt_state, *batch,
                  has_aux: bool = False, keep_last_good: bool = False):
    """One optimiser step on ``batch``: ``(params, opt_state, info)``.

    Args:
        loss_fn: ``(params, *batch) -> loss`` (a scalar), or ``-> (loss, aux)`` with ``has_aux`` (``aux`` a
            dict).
        optimizer: the optax transformation (``opt_state`` is its state).
        keep_last_good: return the old ``params`` and ``opt_state`` unchanged when the loss or a gradient is not
            finite, or when ``aux["ok"]`` (if there is one) is not all true; ``info["good"]`` tells which.

    Returns:
        the new parameters and optimiser state, and ``info = {"loss": loss, **aux}`` (plus ``"good"`` with
        ``keep_last_good``).
    """
    value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
    loss, aux = value if has_aux else (value, {})
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    info = {"loss": loss, **aux}
    if not keep_last_good:
        return new_params, new_opt_state, info
    finite_grads = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    good = jnp.isfinite(loss) & finite_grads
    if "ok" in aux:
        good = jnp.all(aux["ok"]) & good
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, old)  # noqa: E731
    return keep(new_params, params), keep(new_opt_state, opt_state), {**info, "good": good}


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation, *, has_aux: bool = False,
                    keep_last_good: bool = False, donate: bool = False) -> Callable:
    """`gradient_step` with ``loss_fn`` and ``optimizer`` bound, jit-compiled:
    ``(params, opt_state, *batch) -> (params, opt_state, info)``.

    ``donate`` lets the step reuse the buffers of ``params`` and ``opt_state`` (they must not be read after the
    call). Equal arguments give the same jitted function (``loss_fn`` and ``optimizer`` compared by ``==``: make
    the loss a frozen dataclass with ``__call__`` and the optimiser with `pdeflow.fitting.optim.OptimizerConfig.make`),
    so a repeated or resumed fit reuses the compiled step. Its compiled name is ``train_step``.
    """
    return _make_train_step(loss_fn, optimizer, has_aux, keep_last_good, donate)


@functools.lru_cache(maxsize=64)
def _make_train_step(loss_fn, optimizer, has_aux, keep_last_good, donate):
    def train_step(params, opt_state, *batch):
        return gradient_step(loss_fn, optimizer, params, opt_state, *batch, has_aux=has_aux,
                             keep_last_good=keep_last_good)

    return jax.jit(train_step, donate_argnums=(0, 1) if donate else ())


def train_loop(step: Callable[[int], Any], steps: int, *, start: int = 0, eval_every: int = 0,
               evaluate: Callable[[int, Any], Any] | None = None, report: Callable[[Any], None] | None = None,
               checkpoint_every: int = 0, checkpoint: Callable[[int], None] | None = None,
               should_stop: Callable[[], bool] | None = None, postfix: Callable[[Any], dict] | None = None,
               progress: bool = False, name: str = "train", interrupt_hint: str = "") -> int:
    """Run ``step(i)`` for ``i = start + 1 … steps`` with hooks; returns the last step run.

    After step ``i`` (which returns ``info``), in this order:

    1. ``record = evaluate(i, info)`` if ``i`` is a multiple of ``eval_every`` or ``i == steps`` (skipped with
       ``eval_every = 0``); ``postfix(record)`` goes onto the progress bar and, with the step, into one line
       logged at INFO to this module's logger (``pdeflow.fitting.train_loop``; the CLI shows it when it shows no bar);
    2. ``checkpoint(i)`` if ``i`` is a multiple of ``checkpoint_every`` (never with 0);
    3. ``report(record)`` if step ``i`` evaluated;
    4. on SIGINT received since the last step boundary: ``checkpoint(i)``, then ``KeyboardInterrupt("<name>
       interrupted after step i<interrupt_hint>")``.

    The loop stops before ``steps`` when ``should_stop()`` is true (checked before every step, so a resumed
    loop that had already stopped runs none); at the end it calls ``checkpoint(last step)`` (the hook should
    skip a step it has just saved). The progress bar (tqdm, ``progress``) counts steps from ``start``.
    """
    from tqdm.auto import tqdm

    done = start
    bar = tqdm(total=steps, initial=start, desc=name, disable=not progress, unit="step")
    try:
        with interrupt_at_step_boundary() as interrupted:
            while done < steps and not (should_stop is not None and should_stop()):
                i = done + 1
                info = step(i)
                record = None
                if eval_every and evaluate is not None and (i % eval_every == 0 or i == steps):
                    record = evaluate(i, info)
                    shown = postfix(record) if postfix is not None else {}
                    bar.set_postfix(**shown)
                    _LOG.info("%s: step %d of %d%s", name, i, steps, "".join(f", {k} {v}" for k, v in shown.items()))
                done = i
                bar.update(1)
                if checkpoint is not None and checkpoint_every and i % checkpoint_every == 0:
                    checkpoint(i)
                if record is not None and report is not None:
                    report(record)
                if interrupted():
                    if checkpoint is not None:
                        checkpoint(i)
                    raise KeyboardInterrupt(f"{name} interrupted after step {i}{interrupt_hint}")
    finally:
        bar.close()
    if checkpoint is not None:
        checkpoint(done)
    return done


@contextlib.contextmanager
def interrupt_at_step_boundary():
    """While active, SIGINT (Ctrl-C) sets a flag instead of raising, so a loop can finish the step under way
    and save it. Yields a function that tells whether SIGINT arrived. Outside the main thread it does
    nothing (the flag stays false)."""
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
