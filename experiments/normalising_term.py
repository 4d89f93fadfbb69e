"""Probe: does a normalising term close the faithful preset's gap on MiniLM's deep blocks?

MiniLM's blocks end in a LayerNorm; the attention-PDE has no term that keeps token states on that scale. This
script registers one more PDE term (`pdeflow.pde.terms`), ``γ(t)·(LN(u)·g(t) + b(t) − u)`` (a token-wise
LayerNorm with a gain and bias that vary in depth-time, γ free and starting at 0, so the fit starts where the
preset starts), and runs the faithful preset with it. The term is registered here, not in the package:
registering a term adds its parameters to every surrogate.

    python -m experiments.normalising_term --out experiments/results/normalising_term
"""

from __future__ import annotations

import argparse
import dataclasses

import jax.numpy as jnp

from pdeflow.pde import attention_pde, terms


def _normalise(x: terms.TermInputs) -> terms.TermParts:
    group = attention_pde.at_time(x.params, x.config, "normalise", x.t)
    mean = x.u.mean(-1, keepdims=True)
    centred = x.u - mean
    normalised = centred / jnp.sqrt((centred * centred).mean(-1, keepdims=True) + 1e-6)
    return terms.TermParts(pointwise=normalised * group["gain"] + group["bias"] - x.u)


def _init(keys, config):
    return {"normalise": {"gain": jnp.ones((config.width,)), "bias": jnp.zeros((config.width,))}}


NORMALISE = terms.Term("normalise", "γ", "gamma", "normalisation γ(t)", initial_value=0.0, positive=False,
                       parts=_normalise, init=_init, varying_groups=("normalise",))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="report folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    terms.register_term(NORMALISE)
    from pdeflow.pipeline import fit_and_measure, preset_config
    from pdeflow.report import summary_markdown, write_report

    config = preset_config("faithful", "minilm")
    surrogate = dataclasses.replace(config.surrogate, terms=config.surrogate.terms + ("normalise",),
                                    varying=config.surrogate.varying + ("normalise",))
    report = fit_and_measure("minilm", dataclasses.replace(config, surrogate=surrogate), progress=False)
    write_report(report, args.out, overwrite=args.overwrite)
    print(summary_markdown(report.metrics))


if __name__ == "__main__":
    main()
