"""config -> what a training run is made of: the mesh, the optimizer, the sharded train state,
the loss and the jitted steps. The one builder the loop, the benchmark and the tests use.

  setup = build(model_cfg, optim_cfg, mesh_shape=(-1, 1, 1))
  state = setup.init_state(seed=0)
  train_step = setup.train_step(setup.loss_fn(loss_cfg, state, tokenizer, corpus))
  with jax.set_mesh(setup.mesh):
    state, metrics = train_step(state, batch)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from dft_jax import losses
from dft_jax.models.config import ModelConfig
from dft_jax.train import mesh as mesh_lib
from dft_jax.train import optimizer as optimizer_lib
from dft_jax.train import state as state_lib
from dft_jax.train import step as step_lib


@dataclasses.dataclass
class Setup:
  mesh: Mesh
  model_cfg: ModelConfig
  tx: optax.GradientTransformation
  lr_schedule: optax.Schedule
  with_anchor: bool                  # the state keeps the starting params (KL / embeddings)
  shardings: state_lib.TrainState    # of every state leaf on `mesh`
  graphdef: nnx.GraphDef
  grad_accum_steps: int = 1

  def init_state(self, seed: int = 0, params=None) -> state_lib.TrainState:
    """A fresh state placed by the shardings; `params`: pretrained base weights (placed)."""
    state, _ = state_lib.create(self.model_cfg, self.tx, self.mesh, seed=seed, params=params,
                                with_anchor=self.with_anchor)
    return state

  def restore_target(self, seed: int = 0) -> state_lib.TrainState:
    """The abstract state carrying its shardings: what a checkpoint is restored into."""
    abstract = state_lib.abstract_state(self.model_cfg, self.tx, seed, self.with_anchor)
    return mesh_lib.placed(abstract, self.shardings)

  def loss_fn(self, loss_cfg, state: state_lib.TrainState, tokenizer=None, corpus: str = "",
              data_dir: str | None = None, reference_documents: Any = None,
              reference: Any = None, eos_id: int | None = None) -> Callable:
    """The objective of `loss_cfg` (losses.make); embedding features and the KL anchor see
    the model as `state` started (the anchor the state keeps, also after a resume).
    `reference` / `eos_id`: given instead of building them from the tokenizer and corpus
    (ahead-of-time compiles)."""
    starting_model = None
    if self.with_anchor:
      starting_model = lambda: nnx.merge(self.graphdef, state.anchor, state.frozen)  # noqa: E731
    context = losses.Context(tokenizer, corpus, data_dir, starting_model=starting_model,
                             reference_documents=reference_documents, reference=reference,
                             eos_id=eos_id)
    return losses.make(loss_cfg, self.model_cfg, context)

  def train_step(self, loss_fn: Callable):
    """`(state, batch) -> (state, metrics)`, jitted with shardings, the state donated."""
    return step_lib.jit_train_step(self.mesh, self.shardings, graphdef=self.graphdef,
                                   loss_fn=loss_fn, tx=self.tx, lr_schedule=self.lr_schedule,
                                   grad_accum_steps=self.grad_accum_steps)

  def eval_step(self):
    return step_lib.jit_eval_step(self.mesh, self.shardings, self.graphdef)


def build(model_cfg: ModelConfig, optim_cfg, *, mesh_shape=(-1, 1, 1), devices=None,
          with_anchor: bool = False, grad_accum_steps: int = 1) -> Setup:
  """`optim_cfg`: optimizer.make's fields (lr, schedule, total_steps, AdamW, clipping)."""
  mesh = mesh_lib.make_mesh(tuple(mesh_shape), devices)
  tx, lr_schedule = optimizer_lib.make(optim_cfg)
  abstract = state_lib.abstract_state(model_cfg, tx, 0, with_anchor)
  return Setup(mesh, model_cfg, tx, lr_schedule, with_anchor,
               state_lib.shardings(abstract, mesh), state_lib.graphdef(model_cfg),
               grad_accum_steps)


def from_config(config: ml_collections.ConfigDict, model_cfg: ModelConfig,
                devices=None) -> Setup:
  """`build` for a run config (mesh_shape, optim with total_steps, loss)."""
  optim_cfg = ml_collections.ConfigDict(config.optim.to_dict())
  optim_cfg.total_steps = config.total_steps
  return build(model_cfg, optim_cfg, mesh_shape=config.mesh_shape, devices=devices,
               with_anchor=losses.needs_anchor(config.loss),
               grad_accum_steps=config.optim.grad_accum_steps)
