"""The native model directory: `model_config.json` + an orbax checkpoint of the parameters.

Restored against an abstract model, so the same files load at any dtype or sharding.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import orbax.checkpoint as ocp
from flax import nnx

from dft_jax.models.config import ModelConfig
from dft_jax.models.decoder import Decoder
from dft_jax.models.decoder import abstract_model
from dft_jax.models.hf_io import CheckpointError

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"


def is_native_dir(path: str | os.PathLike) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


def save(model: Decoder, path: str | os.PathLike, *, tokenizer_file: str | None = None):
  """Writes the model (overwriting an earlier native save in `path`)."""
  path = os.path.abspath(os.fspath(path))
  os.makedirs(path, exist_ok=True)
  params_dir = os.path.join(path, PARAMS_DIR)
  if os.path.exists(params_dir):
    shutil.rmtree(params_dir)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(params_dir, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  checkpointer.wait_until_finished()
  with open(os.path.join(path, CONFIG_FILE), "w") as f:
    json.dump(model.cfg.to_dict(), f, indent=2)
  if tokenizer_file:
    shutil.copyfile(tokenizer_file, os.path.join(path, "tokenizer.json"))


def load_config(path: str | os.PathLike) -> ModelConfig:
  file = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(file):
    raise FileNotFoundError(f"no {CONFIG_FILE} in {path} (not a dft_jax model directory)")
  with open(file) as f:
    return ModelConfig.from_dict(json.load(f))


def load(path: str | os.PathLike, *, return_config: bool = False, **overrides):
  """Loads a native model directory; `overrides` change numerics (dtype, param_dtype, ...)."""
  path = os.path.abspath(os.fspath(path))
  cfg = load_config(path).replace(**overrides)
  graphdef, abstract_state = nnx.split(abstract_model(cfg))
  target = nnx.to_pure_dict(nnx.state(nnx.merge(graphdef, abstract_state), nnx.Param))
  checkpointer = ocp.StandardCheckpointer()
  params_dir = os.path.join(path, PARAMS_DIR)
  if not os.path.isdir(params_dir):
    raise CheckpointError(f"no {PARAMS_DIR}/ in {path}")
  check_shapes(checkpointer.metadata(params_dir).item_metadata.tree, target, path)
  restored = checkpointer.restore(params_dir, target)
  nnx.replace_by_pure_dict(abstract_state, restored)
  model = nnx.merge(graphdef, abstract_state)
  return (model, cfg) if return_config else model


def check_shapes(saved, target, path) -> None:
  """Names the first parameter whose saved shape differs from the config's, before reading."""
  def by_name(tree):  # path -> shape, whether leaves sit in nnx Variables (`.value`) or not
    out = {}
    for key, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      parts = [str(getattr(k, "key", getattr(k, "name", k))) for k in key]
      out["/".join(p for p in parts if p != "value")] = leaf.shape
    return out
  have = by_name(saved)
  for name, shape in by_name(target).items():
    if name not in have:
      raise CheckpointError(f"parameter {name!r} is missing from {path}")
    if tuple(have[name]) != tuple(shape):
      raise CheckpointError(f"parameter {name!r} in {path} has shape {tuple(have[name])}, "
                            f"{CONFIG_FILE} implies {tuple(shape)}")
