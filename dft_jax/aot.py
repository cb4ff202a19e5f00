r"""python -m dft_jax.aot --config=experiments/FILE.py[:args] --topology=v5p:4x4x4 [--json]

Compiles the run's own CE and DFT train steps (train/setup.py, as training builds them) for a
TPU slice on this host, with the state, anchor and reference bank as abstract arrays (no
weights, no TPU), and prints per chip: arguments, outputs, temporaries, code and the peak
against the chip's HBM; FLOPs per step and per token; a roofline estimate of step time and
MFU (train/chips.py). These are compiler figures and estimates, not measurements.

  --mesh=data:1,fsdp:-1,tensor:1   the mesh (default: the config's mesh_shape)
  --seq_len=2048 --rows_per_chip=4  the batch a pod run would use (8 K tokens per chip)
  --steps=ce,dft --dft_features=stats,both   which steps; DFT with each feature space
  --json                            the last line is one JSON object

A step that does not fit prints one line with what it needs and the standard fsdp x tensor
mesh that fits, if one does, and the command exits 1. Needs libtpu:
pip install "jax[tpu]==<the installed jax version>".
"""

import os

# libtpu on a host without TPUs: compile only, no device search
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compiles only: no chip to share
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-1")  # any valid name quiets libtpu

import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from dft_jax.losses import dft as dft_objective  # noqa: E402
from dft_jax.losses import reference as reference_lib  # noqa: E402
from dft_jax.train import aot  # noqa: E402
from dft_jax.train import chips as chips_lib  # noqa: E402
from dft_jax.train import loop  # noqa: E402
from dft_jax.train import mesh as mesh_lib  # noqa: E402
from dft_jax.train import setup as setup_lib  # noqa: E402

config_flags.DEFINE_config_file("config", None, "Experiment config file[:args].",
                                lock_config=False)
flags.DEFINE_string("topology", None, "TPU topology, e.g. v5e:2x4, v5p:4x4x4, v6e:4x4.",
                    required=True)
flags.DEFINE_string("mesh", "", "data:D,fsdp:F,tensor:T (one may be -1); default: the "
                    "config's mesh_shape.")
flags.DEFINE_integer("seq_len", 2048, "Tokens per row.")
flags.DEFINE_integer("rows_per_chip", 4, "Rows of the batch per chip.")
flags.DEFINE_list("steps", ["ce", "dft"], "Steps to compile: ce, dft.")
flags.DEFINE_list("dft_features", [], "DFT feature spaces (stats, embedding, both); default: "
                  "the config's. The first is step 'dft', the others 'dft_<space>'.")
flags.DEFINE_integer("dist_batch", 0, "DFT prompts per step; 0: the config's, rounded up to "
                     "a multiple of the batch shards.")
flags.DEFINE_bool("json", False, "Print one JSON object as the last line.")
FLAGS = flags.FLAGS


def parse_mesh(text: str, default) -> tuple[int, int, int]:
  if not text:
    return tuple(default)
  sizes = dict.fromkeys(mesh_lib.AXES, 1)
  for item in text.split(","):
    axis, _, size = item.partition(":")
    if axis not in sizes or not size.lstrip("-").isdigit():
      raise ValueError(f"--mesh item {item!r} is not axis:size with axis in {mesh_lib.AXES}")
    sizes[axis] = int(size)
  return tuple(sizes.values())


def loss_configs(config) -> dict:
  """{step name: loss config} of the steps asked for."""
  out = {}
  for step in FLAGS.steps:
    if step == "ce":
      out["ce"] = {"name": "ce"}
    elif step == "dft":
      base = config.loss.to_dict() if config.loss.name == "dft" else {}
      spaces = FLAGS.dft_features or [base.get("features", "stats")]
      for i, space in enumerate(spaces):
        out["dft" if i == 0 else f"dft_{space}"] = {**base, "features": space}
    else:
      raise ValueError(f"unknown step {step!r}; known: ce, dft")
  return out


def compile_one(config, model_cfg, loss_dict, devices, mesh_shape, rows):
  """(StepReport, abstract state) of one step on one mesh."""
  config = config.copy_and_resolve_references()
  config.mesh_shape = mesh_shape
  loss_cfg = dft_objective.config(**loss_dict) if loss_dict["name"] == "dft" else \
      type(config.loss)(loss_dict)
  config.loss = loss_cfg
  setup = setup_lib.from_config(config, model_cfg, devices=devices)
  shards = setup.mesh.shape["data"] * setup.mesh.shape["fsdp"]
  if loss_dict["name"] == "dft":
    dist = FLAGS.dist_batch or -(-loss_cfg.dist_batch // shards) * shards
    loss_cfg.dist_batch = min(dist, rows)
  state = setup.restore_target(config.seed)
  eos = model_cfg.eos_token_id
  eos = (eos[0] if isinstance(eos, tuple) else eos) or 0
  reference = reference_lib.placeholder(loss_cfg, model_cfg) if loss_dict["name"] == "dft" \
      else None
  loss_fn = setup.loss_fn(loss_cfg, state, reference=reference, eos_id=eos)
  batch = aot.abstract_batch(setup.mesh, rows, config.seq_len)
  compiled, flops, seconds = aot.compile_step(setup.train_step(loss_fn), state, batch,
                                              setup.mesh)
  rep = aot.report(compiled, flops, seconds, chips=len(devices),
                   chip=chips_lib.for_topology(FLAGS.topology), tokens=rows * config.seq_len,
                   model_cfg=model_cfg, seq_len=config.seq_len)
  rep.dist_batch = loss_cfg.dist_batch if loss_dict["name"] == "dft" else 0
  return rep, state


def fitting_mesh(config, model_cfg, loss_dict, devices, rows, tried, state_bytes):
  """The first standard mesh (all-FSDP, then FSDP x tensor) on which the step fits, or None.
  Nothing is compiled when the sharded state alone exceeds HBM: no split of the slice fits."""
  chip = chips_lib.for_topology(FLAGS.topology)
  if state_bytes / len(devices) > chip.hbm_bytes:
    return None
  for shape in aot.candidate_meshes(len(devices)):
    if shape != tried and compile_one(config, model_cfg, loss_dict, devices, shape,
                                      rows)[0].fits:
      return shape
  return None


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  try:
    run()
  except ValueError as e:  # a bad topology, mesh, step or config: one line
    sys.exit(f"aot: error: {str(e).splitlines()[0]}")


def run():
  config = FLAGS.config
  devices = aot.topology_devices(FLAGS.topology)
  chip = chips_lib.for_topology(FLAGS.topology)
  rows = FLAGS.rows_per_chip * len(devices)
  config.seq_len, config.batch_size = FLAGS.seq_len, rows
  model_cfg = loop.model_config(config, platform="tpu")
  mesh_shape = mesh_lib.resolve_shape(parse_mesh(FLAGS.mesh, config.mesh_shape), len(devices))
  mesh = dict(zip(mesh_lib.AXES, mesh_shape))
  print(f"aot: {FLAGS.topology} ({len(devices)} x {chip.name}, {chip.hbm_bytes / 2**30:.0f} "
        f"GiB HBM each) | mesh {mesh} | {model_cfg.model_type} {model_cfg.num_params:,} "
        f"parameters, compute {model_cfg.dtype}, params {model_cfg.param_dtype}, remat "
        f"{model_cfg.remat_policy}, attention {model_cfg.attention_impl}, layers "
        f"{model_cfg.layer_loop} | batch {rows} x "
        f"{FLAGS.seq_len} tokens", flush=True)
  steps, failures = {}, []
  for name, loss_dict in loss_configs(config).items():
    rep, state = compile_one(config, model_cfg, loss_dict, devices, mesh_shape, rows)
    print(rep.line(name), flush=True)
    steps[name] = {k: None if isinstance(v, float) and math.isnan(v) else v  # JSON null
                   for k, v in dataclasses.asdict(rep).items()}
    if not rep.fits:
      better = fitting_mesh(config, model_cfg, loss_dict, devices, rows, mesh_shape,
                            aot.state_bytes(state))
      where = (f"mesh {dict(zip(mesh_lib.AXES, better))} fits it" if better else
               "no standard fsdp/tensor mesh of this slice fits it")
      failures.append(f"{name} needs {rep.peak_bytes / 2**30:.1f} GiB per chip"
                      f"{' of temporaries' if not rep.argument_bytes else ''} ({where})")
  if failures:
    print(f"does not fit on {FLAGS.topology} ({chip.hbm_bytes / 2**30:.0f} GiB HBM per chip): "
          + "; ".join(failures), flush=True)
  if FLAGS.json:
    print(json.dumps({"topology": FLAGS.topology, "chips": len(devices), "mesh": mesh,
                      "steps": steps}))
  sys.exit(1 if failures else 0)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
