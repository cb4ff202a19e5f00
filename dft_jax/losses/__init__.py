"""Training objectives. Each is `loss_fn(model, batch, rng) -> (loss, metrics)`, picked by
`config.loss.name` through `make`."""

from __future__ import annotations

from typing import Callable

from dft_jax.losses import cross_entropy

LossFn = Callable  # (model, batch, rng) -> (scalar loss, dict of scalar metrics)

_REGISTRY = {
    "ce": cross_entropy.make,
}


def make(loss_cfg, model_cfg) -> LossFn:
  name = loss_cfg.name
  if name not in _REGISTRY:
    raise ValueError(f"unknown loss.name {name!r}; available: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[name](loss_cfg, model_cfg)
