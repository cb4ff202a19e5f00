"""The pure train step `(state, batch) -> (state, metrics)` and the eval step.

The loss is pluggable: `loss_fn(model, batch, rng, step, anchor=None) -> (loss, metrics)`;
`anchor` is the starting model when the state keeps one (a KL anchor). Gradient accumulation
scans over microbatches inside the one jitted call. A step whose loss or gradient is not
finite leaves params and optimizer state unchanged and reports `finite = 0`; the loop decides
whether to stop or go on.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from dft_jax.losses import cross_entropy
from dft_jax.train import mesh as mesh_lib
from dft_jax.train.state import TrainState


def _microbatches(batch: dict, count: int) -> dict:
  def split(x):
    if x.shape[0] % count:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {count} microbatches")
    return x.reshape(count, x.shape[0] // count, *x.shape[1:])
  return jax.tree.map(split, batch)


def train_step(state: TrainState, batch: dict, *, graphdef, loss_fn, tx, lr_schedule,
               grad_accum_steps: int = 1):
  step_rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

  anchor = None
  if jax.tree.leaves(state.anchor):  # the starting model, for a KL anchor (no gradient)
    anchor = nnx.merge(graphdef, jax.lax.stop_gradient(state.anchor), state.frozen)

  def loss_of(params, microbatch, rng):
    return loss_fn(nnx.merge(graphdef, params, state.frozen), microbatch, rng, state.step,
                   anchor=anchor)

  grad_fn = jax.value_and_grad(loss_of, has_aux=True)
  if grad_accum_steps == 1:
    (loss, aux), grads = grad_fn(state.params, batch, step_rng)
  else:
    micro = _microbatches(batch, grad_accum_steps)

    def body(carry, inputs):
      mb, i = inputs
      (l, a), g = grad_fn(state.params, mb, jax.random.fold_in(step_rng, i))
      return jax.tree.map(jnp.add, carry, (l, a, g)), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(grad_fn, state.params, first, step_rng))
    zeros = (zeros[0][0], zeros[0][1], zeros[1])
    (loss, aux, grads), _ = jax.lax.scan(body, zeros, (micro, jnp.arange(grad_accum_steps)))
    loss, aux, grads = jax.tree.map(lambda x: x / grad_accum_steps, (loss, aux, grads))
    if "tokens" in aux:
      aux["tokens"] = aux["tokens"] * grad_accum_steps
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  def update(params, opt_state):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  # a branch, not a select per leaf: the update then writes the donated buffers in place
  params, opt_state = jax.lax.cond(finite, update, lambda *old: old, state.params,
                                   state.opt_state)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {"loss": loss, "grad_norm": grad_norm, "lr": lr_schedule(state.step),
             "finite": finite.astype(jnp.float32), **aux}
  return new_state, metrics


def eval_step(params, frozen, batch: dict, *, graphdef) -> dict:
  model = nnx.merge(graphdef, params, frozen)
  total, count = cross_entropy.token_nll(cross_entropy.forward(model, batch), batch)
  return {"nll_sum": total, "tokens": count}


def jit_train_step(mesh: Mesh, state_shardings: TrainState, **kwargs):
  """`train_step` jitted with explicit shardings and the state donated."""
  batch = mesh_lib.batch_sharding(mesh)
  return jax.jit(functools.partial(train_step, **kwargs),
                 in_shardings=(state_shardings, batch),
                 out_shardings=(state_shardings, mesh_lib.replicated(mesh)),
                 donate_argnums=0)


def jit_eval_step(mesh: Mesh, state_shardings: TrainState, graphdef):
  return jax.jit(functools.partial(eval_step, graphdef=graphdef),
                 in_shardings=(state_shardings.params, state_shardings.frozen,
                               mesh_lib.batch_sharding(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))
