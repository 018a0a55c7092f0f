"""jaxgen: generative models in JAX/Flax through one sharded train loop.

Layout (see DESIGN.md): `core/` (mesh, sharding, TrainState, optimizers, multi-host),
`data/` (TFDS builders and the step-indexed host pipeline), `models/` (Flax Linen
networks), `methods/` (one module per family implementing the Method contract),
`evals/` (evaluator registry), `train.py` (the one train loop), `main.py` (CLI).
"""

__version__ = "0.1.0"
