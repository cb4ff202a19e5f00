"""orbax checkpoints of (train state, data iterator, config), and where a run starts from.

Resume order: a checkpoint in the workdir -> `init_from` (HF directory, native model directory,
or another run's workdir) -> scratch. Restores go against an abstract target that carries the
new shardings, so a run saved on one mesh resumes on another. A checkpoint that fails to
restore (half-written, corrupt) is reported and the previous one is tried.
"""

from __future__ import annotations

import json
import os

import grain
from absl import logging
import jax
import orbax.checkpoint as ocp
from flax import nnx

from dft_jax.models import config as config_lib
from dft_jax.models import hf_io, native
from dft_jax.models.config import ModelConfig
from dft_jax.models.decoder import abstract_model, merge_lora
from dft_jax.models.hf_io import CheckpointError
from dft_jax.train import mesh as mesh_lib
from dft_jax.train import state as state_lib

MODEL_CONFIG = native.CONFIG_FILE  # the run's model config, beside its checkpoints


def manager(workdir: str, keep: int | None = None, async_save: bool = True,
            create: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_names=("state", "data", "config"))


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator, config: dict,
         *, force: bool = False) -> None:
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(data_iterator),
      config=ocp.args.JsonSave(config)), force=force)


def restore_latest(mngr: ocp.CheckpointManager, target, data_iterator, log=print):
  """(state, step) from the newest checkpoint that restores; None if there is none. If there
  are checkpoints but none restores, that is an error: starting over would bury them."""
  steps = sorted(mngr.all_steps(), reverse=True)
  broken = []
  for step in steps:
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target),
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
    except Exception as e:  # orbax raises many types for damaged files
      log(f"checkpoint at step {step} could not be restored ({type(e).__name__}: "
          f"{(str(e).splitlines() or [''])[0][:200]}); trying the previous one")
      broken.append(step)
      continue
    if broken:  # newer unreadable steps would block saving their step numbers again
      for bad in broken:
        log(f"removing unreadable checkpoint {bad}")
        mngr.delete(bad)
      mngr.reload()
    return restored["state"], step
  if steps:
    raise CheckpointError(f"none of the checkpoints {steps} in {mngr.directory} restores for "
                          "this config (another model?); use a new workdir or fix the config")
  return None


def restore_base_params(workdir: str, params_target):
  """Params of another run's newest checkpoint as a model without adapters (LoRA merged),
  placed as `params_target` (abstract Params with shardings) says."""
  mngr = manager(workdir, create=False)
  step = mngr.latest_step()
  if step is None:
    raise CheckpointError(f"init_from {workdir}: no checkpoint in {workdir}/checkpoints")
  where = os.path.join(os.path.abspath(workdir), "checkpoints", str(step))
  cfg = native.load_config(workdir)
  graph, trained, frozen = state_lib.split_params(abstract_model(cfg))
  if cfg.lora_rank == 0:  # restore straight into the target placement
    trained = params_target
  else:  # adapters are merged on the default device, then placed
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    trained, frozen = mesh_lib.placed(trained, device), mesh_lib.placed(frozen, device)
  item = {"params": trained, "frozen": frozen} if cfg.lora_rank else {"params": trained}
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)  # the item dir has no step metadata file; that is fine
  try:
    saved = ocp.StandardCheckpointer().metadata(os.path.join(where, "state")).item_metadata.tree
  finally:
    logging.set_verbosity(verbosity)
  missing = sorted(set(item) - set(saved))
  if missing:
    raise CheckpointError(f"{where} has no {missing[0]!r} in its state")
  native.check_shapes({k: saved[k] for k in item}, item, where)
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=item, restore_args=jax.tree.map(lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding),
                                           item),
      partial_restore=True)))["state"]
  if cfg.lora_rank == 0:
    return restored["params"]
  model = merge_lora(nnx.merge(graph, restored["params"], restored["frozen"]))
  return jax.device_put(nnx.state(model, nnx.Param), jax.tree.map(lambda t: t.sharding,
                                                                   params_target))


def init_kind(path: str) -> str:
  """'native' | 'hf' | 'workdir' for an init_from path; a clear error otherwise."""
  if not os.path.isdir(path):
    raise CheckpointError(f"init_from {path!r} does not exist")
  if os.path.isdir(os.path.join(path, "checkpoints")) and \
      os.path.isfile(os.path.join(path, MODEL_CONFIG)):
    return "workdir"
  if native.is_native_dir(path):
    return "native"
  if os.path.isfile(os.path.join(path, "config.json")):
    return "hf"
  raise CheckpointError(f"init_from {path!r} is neither a Hugging Face directory (config.json + "
                        "*.safetensors), a dft_jax model directory, nor a dft_jax workdir")


def init_model_config(path: str, **numerics) -> ModelConfig:
  kind = init_kind(path)
  if kind == "hf":
    cfg = config_lib.load_hf_config(path, **numerics)
    hf_io.weight_files(path)  # a missing or truncated weights file fails now, before data prep
    return cfg
  return native.load_config(path).replace(**numerics)


def load_init_params(path: str, cfg: ModelConfig, params_target):
  """Params of the model at `path`, checked against `cfg`, placed as `params_target` says."""
  kind = init_kind(path)
  if kind == "workdir":
    return restore_base_params(path, params_target)
  model = hf_io.from_pretrained(path, dtype=cfg.dtype, param_dtype=cfg.param_dtype) \
      if kind == "hf" else native.load(path, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
  model = merge_lora(model)
  return jax.device_put(nnx.state(model, nnx.Param),
                        jax.tree.map(lambda t: t.sharding, params_target))


def write_model_config(workdir: str, cfg: ModelConfig) -> None:
  with open(os.path.join(workdir, MODEL_CONFIG), "w") as f:
    json.dump(cfg.to_dict(), f, indent=2)


def load_model(workdir: str):
  """The model of a run's newest checkpoint (adapters merged), on the default device."""
  cfg = native.load_config(workdir).replace(lora_rank=0)
  graphdef, abstract = nnx.split(abstract_model(cfg))
  target = mesh_lib.placed(abstract, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  return nnx.merge(graphdef, restore_base_params(workdir, target)), cfg
