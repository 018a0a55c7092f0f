"""Mesh, sharding, TrainState, optimizers, precision and multi-host initialisation."""
