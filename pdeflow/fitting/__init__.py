"""Everything about fitting: the surrogate's fit and its losses, and what every fit and trainer in pdeflow shares.

``fit``          fitting the attention-PDE surrogate to a transformer's trace (phases, length buckets, a device
                 mesh, checkpoints): `FitConfig`, `fit_surrogate`
``losses``       the fit's losses: the attention KL of the free-running surrogate, its hidden-state error, shooting
``optim``        the one optimiser (AdamW, warm-up, cosine decay): `OptimizerConfig`
``train_loop``   one optimiser step and the loop around it (evaluate, checkpoint, Ctrl-C at a step boundary,
                 progress), shared by the surrogate's fit, the transformers trained here and the experiments
``checkpoint``   orbax checkpoints of a running fit, resumed bit for bit
``parallel``     data parallelism over a 1-D device mesh (`jax.sharding`)
``distributed``  several processes or hosts fitting together (`jax.distributed`)

This package imports none of its modules, so that a trainer can import `pdeflow.fitting.train_loop` without the
surrogate's fit; `pdeflow` itself exports `FitConfig`, `FitResult` and `fit_surrogate`.
"""
