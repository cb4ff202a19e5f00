"""The train state, built sharded from the start: abstract init -> shardings from the logical
axis rules -> `jax.jit(init, out_shardings=...)`. It never exists unsharded."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from dft_jax.models.config import ModelConfig
from dft_jax.models.decoder import Decoder
from dft_jax.models.hf_io import abstract_model
from dft_jax.train import mesh as mesh_lib


@struct.dataclass
class TrainState:
  step: jax.Array       # int32 scalar: optimizer steps taken
  params: Any           # nnx.State of the model's Params (logical axis names as metadata)
  opt_state: Any
  rng: jax.Array        # raw uint32 key data (checkpoint-friendly); step keys are fold_in(step)


def graphdef(cfg: ModelConfig) -> nnx.GraphDef:
  return nnx.graphdef(abstract_model(cfg))


def _from_params(params, tx: optax.GradientTransformation, seed: int) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    rng=jax.random.key_data(jax.random.key(seed)))


def abstract_state(cfg: ModelConfig, tx: optax.GradientTransformation, seed: int = 0):
  def init():
    return _from_params(nnx.state(Decoder(cfg, rngs=nnx.Rngs(seed)), nnx.Param), tx, seed)
  return jax.eval_shape(init)


def shardings(abstract: TrainState, mesh: Mesh, rules=mesh_lib.DEFAULT_RULES) -> TrainState:
  return mesh_lib.logical_to_mesh(abstract, mesh, rules)


def create(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh, *, seed: int = 0,
           rules=mesh_lib.DEFAULT_RULES, params=None) -> tuple[TrainState, TrainState]:
  """A fresh state (random init, or the given params), placed by `rules`; and its shardings."""
  abstract = abstract_state(cfg, tx, seed)
  out = shardings(abstract, mesh, rules)
  with jax.set_mesh(mesh):
    if params is None:
      init: Callable = lambda: _from_params(
          nnx.state(Decoder(cfg, rngs=nnx.Rngs(seed)), nnx.Param), tx, seed)
      state = jax.jit(init, out_shardings=out)()
    else:
      params = jax.device_put(params, out.params)
      state = jax.jit(lambda p: _from_params(p, tx, seed), in_shardings=(out.params,),
                      out_shardings=out)(params)
  return state, out


def model_of(state_params, cfg_graphdef: nnx.GraphDef) -> Decoder:
  return nnx.merge(cfg_graphdef, state_params)
