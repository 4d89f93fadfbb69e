"""pdeflow: fit attention-PDE surrogates to transformers, layer by layer, and measure information flow.

Packages by job: ``models`` (traced transformers -> `Trace`), ``data`` (inputs that ship with the machine),
``train`` (transformers trained here), ``pde`` (the attention-PDE and its solve), ``fitting`` (the fit
with optax, its losses, checkpoints, devices and hosts),
``metrics`` (fidelity and baselines), ``information`` (entropies, logit lens, mutual information),
``sources`` (the models pdeflow fits, each with its inputs and token grid, in a registry), ``pipeline`` (the main
job as one call, `fit_and_measure`), ``studies`` (the entropy lens of LM families, the ViT's information
plane), ``report`` and ``store`` (files and figures), ``cli`` (the ``pdeflow`` command). Importing it sets glibc's
allocator to keep freed memory and has JAX run CPU computations in the calling thread (`pdeflow.host_memory`;
``PDEFLOW_MALLOC=system`` leaves both).
"""

import logging

from pdeflow.fitting.fit import FitConfig, FitResult, fit_surrogate
from pdeflow.host_memory import dispatch_in_calling_thread, keep_freed_memory
from pdeflow.models import Trace, load_minilm, load_pretrained
from pdeflow.pde import SolverConfig, SolverError, SurrogateConfig, init_surrogate
from pdeflow.pipeline import (
    DataConfig,
    RunConfig,
    fit_and_measure,
    fit_minilm,
    fit_pretrained,
    fit_transformer,
    fit_vit,
    preset_config,
)
from pdeflow.sources import ModelSource, model_source, register_source

# XLA:CPU's per-call buffers reuse freed memory instead of faulting in fresh pages, and are allocated in the
# calling thread, whose heap is the one kept (`pdeflow.host_memory`; PDEFLOW_MALLOC=system leaves both as they were)
keep_freed_memory()
dispatch_in_calling_thread()  # only where the memory is kept (it checks)

# progress lines (`pdeflow.fitting.train_loop`) are the caller's to show: the CLI does when it shows no progress bar
logging.getLogger("pdeflow").addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = ["DataConfig", "FitConfig", "FitResult", "ModelSource", "RunConfig", "SolverConfig", "SolverError",
           "SurrogateConfig", "Trace", "fit_and_measure", "fit_minilm", "fit_pretrained", "fit_surrogate",
           "fit_transformer", "fit_vit", "init_surrogate", "load_minilm", "load_pretrained", "model_source",
           "preset_config", "register_source"]
