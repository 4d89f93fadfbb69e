"""Probe: does matching the states in the transformer's own basis help the faithful preset's deep blocks?

The preset's hidden-state term compares the read-out of ``u(l)`` with ``hidden[l]``, and the read-out (started at
``Pᵀ``) trains with the kernel, so the surrogate's states may drift from ``hidden[l]·P`` as far as the read-out
follows (`experiments.state_drift`: 28–42 % on MiniLM). This probe holds the read-out at its start, so the term
pulls ``u(l)`` itself towards ``hidden[l]·P``, and runs the faithful preset otherwise unchanged. The hold is
made here, by giving the read-out an optimiser group of its own at rate 0, not in the package.

    python -m experiments.readout_held --out experiments/results/readout_held
"""

from __future__ import annotations

import argparse
import dataclasses

from pdeflow.fitting import fit


def _parameter_group(name: str, kernel_group=fit.parameter_group) -> str:
    return "readout" if name == "readout" else kernel_group(name)


def _optimizer(self, shooting: bool = False, plain=fit.FitConfig.optimizer):
    config = plain(self, shooting)
    return dataclasses.replace(config, group_lr_scales=config.group_lr_scales + (("readout", 0.0),))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="report folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    fit.parameter_group = _parameter_group  # parameter_groups (the optimiser's labels) looks it up here
    fit.FitConfig.optimizer = _optimizer
    from pdeflow.pipeline import fit_and_measure, preset_config
    from pdeflow.report import summary_markdown, write_report

    report = fit_and_measure("minilm", preset_config("faithful", "minilm"), progress=False)
    write_report(report, args.out, overwrite=args.overwrite)
    print(summary_markdown(report.metrics))


if __name__ == "__main__":
    main()
