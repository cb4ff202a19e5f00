"""The train state, built sharded from the start: abstract init -> shardings from the logical
axis rules -> `jax.jit(init, out_shardings=...)`. It never exists unsharded."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from dft_jax.models.config import ModelConfig
from dft_jax.models.decoder import Decoder, abstract_model
from dft_jax.train import mesh as mesh_lib


@struct.dataclass
class TrainState:
  step: jax.Array       # int32 scalar: optimizer steps taken
  params: Any           # nnx.State of the trained Params (logical axis names as metadata)
  frozen: Any           # nnx.State of Params held fixed (the base weights under LoRA; else empty)
  anchor: Any           # the trained params as they started (for a KL anchor; else empty)
  opt_state: Any
  rng: jax.Array        # raw uint32 key data (checkpoint-friendly); step keys are fold_in(step)


def trainable_filter(cfg: ModelConfig):
  return nnx.LoRAParam if cfg.lora_rank else nnx.Param


def split_params(model: Decoder) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
  """(graphdef, trained params, frozen params): under LoRA only the adapters train."""
  graph, trained, frozen = nnx.split(model, trainable_filter(model.cfg), nnx.Param)
  return graph, trained, frozen


def graphdef(cfg: ModelConfig) -> nnx.GraphDef:
  return split_params(abstract_model(cfg))[0]


def _init(cfg: ModelConfig, tx: optax.GradientTransformation, seed: int,
          base_params=None, with_anchor: bool = False) -> TrainState:
  model = Decoder(cfg, rngs=nnx.Rngs(seed))
  if base_params is not None:  # pretrained weights; LoRA adapters (if any) stay freshly made
    nnx.update(model, base_params)
  _, params, frozen = split_params(model)
  anchor = jax.tree.map(jnp.copy, params) if with_anchor else nnx.State({})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, anchor=anchor,
                    opt_state=tx.init(params), rng=jax.random.key_data(jax.random.key(seed)))


def abstract_state(cfg: ModelConfig, tx: optax.GradientTransformation, seed: int = 0,
                   with_anchor: bool = False):
  return jax.eval_shape(lambda: _init(cfg, tx, seed, with_anchor=with_anchor))


def base_params_target(cfg: ModelConfig, mesh: Mesh, rules=mesh_lib.DEFAULT_RULES):
  """Abstract Params of the model without adapters, carrying their shardings on `mesh`."""
  abstract = nnx.state(abstract_model(cfg.replace(lora_rank=0)), nnx.Param)
  shardings = mesh_lib.logical_to_mesh(abstract, mesh, rules)
  return mesh_lib.placed(abstract, shardings)


def shardings(abstract: TrainState, mesh: Mesh, rules=mesh_lib.DEFAULT_RULES) -> TrainState:
  return mesh_lib.logical_to_mesh(abstract, mesh, rules)


def create(cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh, *, seed: int = 0,
           rules=mesh_lib.DEFAULT_RULES, params=None,
           with_anchor: bool = False) -> tuple[TrainState, TrainState]:
  """A fresh state, placed by `rules`, and its shardings. `params`: pretrained base weights
  (an nnx.State of Params, already placed), else random init."""
  abstract = abstract_state(cfg, tx, seed, with_anchor)
  out = shardings(abstract, mesh, rules)
  with jax.set_mesh(mesh):
    if params is None:
      state = jax.jit(lambda: _init(cfg, tx, seed, with_anchor=with_anchor),
                      out_shardings=out)()
    else:
      state = jax.jit(lambda p: _init(cfg, tx, seed, p, with_anchor), out_shardings=out)(params)
  return state, out


def model_of(state: TrainState, graph: nnx.GraphDef) -> Decoder:
  return nnx.merge(graph, state.params, state.frozen)
