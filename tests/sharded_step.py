"""Run as a script (it needs XLA_FLAGS set before jax loads): one train step of a tiny model
on each mesh given, or as one of several processes; prints the results as JSON."""

import argparse
import json

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from dft_jax import losses
from dft_jax.data import pipeline
from dft_jax.models import ModelConfig
from dft_jax.train import mesh as mesh_lib
from dft_jax.train import setup as setup_lib

CFG = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=4, num_kv_heads=2, head_dim=8)
OPTIM = ml_collections.ConfigDict(dict(lr=1e-3, warmup_steps=0, decay="constant",
                                       min_lr_ratio=1.0, total_steps=10, clip_norm=1.0, b1=0.9,
                                       b2=0.95, eps=1e-6, weight_decay=0.1))


def global_batch(rows=8, length=16):
  rng = np.random.RandomState(0)
  segments = np.repeat(np.array([[1] * 10 + [2] * 6]), rows, axis=0).astype(np.int32)
  return {"tokens": rng.randint(0, 64, (rows, length)).astype(np.int32),
          "segment_ids": segments,
          "positions": np.concatenate([np.arange(10), np.arange(6)])[None].repeat(rows, 0)
                       .astype(np.int32),
          "loss_mask": (np.arange(length)[None] % 10 != 0).repeat(rows, 0).astype(np.float32)}


def loss_and_batch(name, workdir):
  """(loss_fn, global batch) of loss `name`: ce, or dft-<divergence> (stats under `workdir`)."""
  if name == "ce":
    return losses.make(ml_collections.ConfigDict({"name": "ce"}), CFG), global_batch()
  import dft_setup
  from dft_jax.losses import reference as reference_lib
  tok = dft_setup.tokenizer()
  docs = dft_setup.short_sentence_docs()
  reference_lib.save_stats(reference_lib.compute_stats(docs, tok, window=16, max_windows=128),
                           workdir + "/s.npz")
  cfg = dft_setup.loss_config(workdir + "/s.npz", dist_batch=8, ce_weight=1.0,
                              divergence=name.split("-")[1])
  return (losses.make(cfg, CFG, losses.Context(tok)),
          dft_setup.batch(tok, docs, rows=8, length=16))


def embedding_of(model):
  """The starting model's fingerprint and embedding bank of a few fixed windows (what
  reference.build computes on every process)."""
  from dft_jax.losses import embedding
  tokens = np.random.RandomState(1).randint(0, 64, (6, 12)).astype(np.int32)
  valid = np.arange(12)[None] < np.array([12, 9, 12, 5, 12, 12])[:, None]
  bank = embedding.embed_bank(model, tokens, valid, 1, "mean", batch_size=4)
  return {"fingerprint": embedding.fingerprint(model, 1, "mean"), "bank": bank.tolist()}


def one_step(mesh_shape, grad_accum_steps=1, devices=None, loss="ce", embedding=False):
  import tempfile
  loss_fn, batch = loss_and_batch(loss, tempfile.mkdtemp())
  setup = setup_lib.build(CFG, OPTIM, mesh_shape=mesh_shape, devices=devices,
                          grad_accum_steps=grad_accum_steps)
  mesh, state = setup.mesh, setup.init_state(seed=0)
  step = setup.train_step(loss_fn)
  rows = batch["tokens"].shape[0] // jax.process_count()
  local = {k: v[jax.process_index() * rows:(jax.process_index() + 1) * rows]
           for k, v in batch.items()}
  with jax.set_mesh(mesh):
    starting = embedding_of(nnx.merge(setup.graphdef, state.params, state.frozen)) \
        if embedding else {}
    state, metrics = step(state, pipeline.to_global(local, mesh_lib.batch_sharding(mesh)))
  gather = lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)).tolist()
  params = [gather(x) for x in jax.tree.leaves(state.params)]
  return {"loss": float(metrics["loss"]), "params": params, **starting,
          "dist": float(metrics.get("dist", 0.0)), "ce": float(metrics.get("ce", 0.0))}


if __name__ == "__main__":
  parser = argparse.ArgumentParser()
  parser.add_argument("--meshes", default="1,1,1")
  parser.add_argument("--grad_accum", type=int, default=1)
  parser.add_argument("--loss", default="ce", help="ce | dft-sinkhorn | dft-mmd")
  parser.add_argument("--embedding", action="store_true",
                      help="also the starting model's embedding fingerprint and bank")
  parser.add_argument("--coordinator", default=None)
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  args = parser.parse_args()
  if args.coordinator:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  out = {}
  for spec in args.meshes.split(";"):
    shape = tuple(int(s) for s in spec.split(","))
    n = int(np.prod([s for s in shape if s > 0]))
    devices = jax.devices()[:n] if -1 not in shape else None
    out[spec] = one_step(shape, args.grad_accum, devices, args.loss, args.embedding)
  if jax.process_index() == 0:
    print("RESULT " + json.dumps(out))
