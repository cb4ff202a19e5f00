"""optax AdamW (no decay on norms and biases), warm-up then cosine or linear decay, and
global-norm clipping."""

from __future__ import annotations

import jax
import optax


def schedule(cfg) -> optax.Schedule:
  """cfg: lr, warmup_steps, decay ('cosine' | 'linear' | 'constant'), min_lr_ratio, and the
  number of decay steps (total_steps)."""
  warmup = max(int(cfg.warmup_steps), 0)
  decay_steps = max(int(cfg.total_steps) - warmup, 1)
  end = cfg.lr * cfg.min_lr_ratio
  if cfg.decay == "cosine":
    decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
  elif cfg.decay == "linear":
    decay = optax.linear_schedule(cfg.lr, end, decay_steps)
  elif cfg.decay == "constant":
    decay = optax.constant_schedule(cfg.lr)
  else:
    raise ValueError(f"unknown optim.decay {cfg.decay!r}; expected cosine, linear or constant")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def decay_mask(params):
  """Weight decay on weight matrices only: not on norm scales or biases (whatever their rank)."""
  def keep(path, _):
    name = str(path[-2] if getattr(path[-1], "name", None) == "value" else path[-1])
    return "bias" not in name and "scale" not in name
  return jax.tree_util.tree_map_with_path(keep, params)


def make(cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(cfg)
  tx = optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm > 0 else optax.identity(),
      optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                  mask=decay_mask),
  )
  return tx, lr
