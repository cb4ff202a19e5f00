"""The training loop: data, state, the jitted step, metrics one step late, eval, checkpoints,
preemption (SIGTERM -> save at the next step boundary, exit 0) and resume."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from dft_jax.data import corpora, files, pipeline, sources
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.models import gguf_io
from dft_jax.models.config import ModelConfig, platform_numerics
from dft_jax.train import checkpoint as ckpt_lib
from dft_jax.train import mesh as mesh_lib
from dft_jax.train import provenance
from dft_jax.train import setup as setup_lib
from dft_jax.train import state as state_lib
from dft_jax.train.metrics import MetricsWriter

# model fields that are training choices, applied on top of init_from's architecture
NUMERICS = ("dtype", "param_dtype", "remat_policy", "attention_impl", "layer_loop", "lora_rank",
            "lora_alpha", "lora_targets")


class TrainError(RuntimeError):
  """A run that cannot go on; the message says why and what was kept."""


def log(msg: str) -> None:
  if jax.process_index() == 0:
    print(msg, flush=True)


# --- setup ---------------------------------------------------------------------------------


def check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_probe_{jax.process_index()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise TrainError(f"workdir {workdir!r} is not writable: {e.strerror}") from None


def resolve_init_from(path: str, data_dir: str | None = None) -> str:
  """init_from as a directory: a GGUF file is converted once (float32 safetensors, config.json,
  tokenizer.json) into DATA_ROOT/models/gguf/NAME-KEY, process 0 first, and that is used."""
  if not path.endswith(".gguf"):
    return path
  if not os.path.isfile(path):
    raise TrainError(f"init_from {path!r} does not exist")
  stat = os.stat(path)
  key = hashlib.sha1(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
  out = os.path.join(corpora.data_root(data_dir), "models", "gguf",
                     f"{os.path.basename(path)[:-len('.gguf')]}-{key.hexdigest()[:10]}")
  with files.process_zero_first(f"gguf {out}"):
    if not os.path.isfile(os.path.join(out, "config.json")):
      log(f"init_from: converting {path} to a Hugging Face directory {out} (once)")
      tmp = f"{out}.tmp{os.getpid()}"
      try:
        gguf_io.convert(path, tmp)
        os.replace(tmp, out)
      finally:  # a failed conversion leaves nothing half-written behind
        shutil.rmtree(tmp, ignore_errors=True)
  return out


def model_config(config: ml_collections.ConfigDict, platform: str | None = None) -> ModelConfig:
  """The architecture trained (init_from's, else config.model's) with the run's numerics,
  "auto" ones chosen for `platform` (default: this process's backend)."""
  numerics = {k: config.model.get(k, "auto") for k in NUMERICS}
  numerics = platform_numerics(numerics, platform or jax.default_backend())
  numerics["lora_targets"] = tuple(numerics["lora_targets"])
  if config.init_from:
    cfg = ckpt_lib.init_model_config(config.init_from, **numerics)
    log(f"model: {cfg.model_type} from init_from={config.init_from} "
        f"({cfg.num_params:,} parameters)")
    return cfg
  arch = {k: v for k, v in config.model.to_dict().items() if k not in NUMERICS}
  return ModelConfig.from_dict({**arch, **numerics})


def trained_config(config: ml_collections.ConfigDict,
                   cfg: ModelConfig) -> ml_collections.ConfigDict:
  """The run's config with `model` holding the architecture trained (init_from's when given,
  every field of it) beside the numerics as asked: what the workdir's config.json records."""
  arch = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NUMERICS}
  out = ml_collections.ConfigDict(config.to_dict())
  out.model = ml_collections.ConfigDict({**config.model.to_dict(), **arch})
  return out


def tokenizer_for(config, workdir: str) -> tokenizer_lib.Tokenizer:
  """The run's tokenizer, in this order: the workdir's (a resumed run), data.tokenizer,
  init_from's, or a byte-level BPE trained once on data.tokenizer_corpus and cached."""
  own = os.path.join(workdir, "tokenizer.json")
  candidates = [own, config.data.tokenizer]
  if config.init_from:
    candidates.append(os.path.join(config.init_from, "tokenizer.json"))
  for path in filter(None, candidates):
    if os.path.isfile(path) or os.path.isdir(path):
      tok = tokenizer_lib.load(path)
      break
  else:
    if config.init_from or config.data.tokenizer:
      raise TrainError(f"no tokenizer: {config.data.tokenizer or config.init_from} has no "
                       "tokenizer.json")
    vocab = config.model.vocab_size
    key = f"bpe{vocab}-" + "-".join(sorted(config.data.tokenizer_corpus.split(",")))
    cached = os.path.join(corpora.data_root(config.data.data_dir or None), "tokenizers",
                          key + ".json")
    if not files.exists_on_process_zero(cached):
      docs = sources.documents(config.data.tokenizer_corpus, "train", config.data.data_dir)
      with files.process_zero_first(f"tokenizer {cached}"):
        if not os.path.isfile(cached):
          log(f"tokenizer: training a {vocab}-token byte-level BPE on "
              f"{config.data.tokenizer_corpus}")
          tok = tokenizer_lib.train_byte_level_bpe((docs[i] for i in range(len(docs))), vocab)
          with files.atomic_path(cached, ".json") as tmp:
            tok.save(tmp)
    tok = tokenizer_lib.load(cached)
  if jax.process_index() == 0 and not os.path.isfile(own):
    tok.save(own)
  return tok


def measured_peak_flops(n: int = 1024, repeats: int = 5) -> float:
  """FLOP/s of a large f32 matmul on all local devices: the denominator of MFU.

  The fastest of `repeats` timed calls, so a measurement taken while another process shares
  the cores reads less low (a low peak once gave MFU above 100% after the cores freed up).
  """
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  fastest = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    f(x).block_until_ready()
    fastest = min(fastest, time.perf_counter() - start)
  return 2 * n**3 / fastest * jax.device_count()


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token: 6 x (non-embedding params + LM head) + attention scores
  (12 x layers x seq_len x heads x head_dim, causal masking not discounted)."""
  embed = cfg.vocab_size * cfg.hidden_size
  non_embed = cfg.num_params - embed * (1 if cfg.tie_word_embeddings else 2)
  return 6 * (non_embed + embed) + 12 * cfg.num_layers * seq_len * cfg.num_heads * cfg.head_dim


class Preemption:
  """SIGTERM sets a flag; the loop saves at the next step boundary and exits cleanly."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def agreed(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    flags = multihost_utils.process_allgather(np.asarray(self.requested))
    return bool(np.any(flags))

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


# --- the loop ------------------------------------------------------------------------------


def _initial_state(config, setup: setup_lib.Setup, mngr, train_iter, workdir: str):
  """(state, first step): the latest checkpoint of `workdir` (with the data position), else
  a fresh state from init_from's weights or random init."""
  restored = ckpt_lib.restore_latest(mngr, setup.restore_target(config.seed), train_iter, log)
  if restored is not None:
    log(f"resumed from {workdir}/checkpoints at step {restored[1]}")
    return restored
  params = None
  if config.init_from:
    params = ckpt_lib.load_init_params(config.init_from, setup.model_cfg,
                                       state_lib.base_params_target(setup.model_cfg, setup.mesh))
  return setup.init_state(config.seed, params), 0


def _validate(config, tok, data_cfg, val_docs, eval_step, mesh, state, step) -> dict:
  """Mean NLL over `eval_batches` batches of the validation documents."""
  it = iter(pipeline.make_dataset(val_docs, tok, data_cfg))
  total = count = 0.0
  for _ in range(config.eval_batches):
    out = jax.device_get(eval_step(state.params, state.frozen,
                                   pipeline.to_global(next(it), mesh_lib.batch_sharding(mesh))))
    total, count = total + float(out["nll_sum"]), count + float(out["tokens"])
  loss = total / max(count, 1.0)
  result = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)), "val_tokens": count}
  log(f"validation: step {step} | loss {loss:.4f} | ppl {result['val_ppl']:.2f} | "
      f"{int(count)} tokens of {config.data.corpus}")
  return result


class Reporter:
  """Checks each step's finiteness and logs / writes a metrics row on log steps, with
  throughput and MFU over the steps since the last row."""

  def __init__(self, config, cfg: ModelConfig, writer: MetricsWriter, mngr, start: int):
    self.config, self.writer, self.mngr = config, writer, mngr
    self.tokens_per_step = config.batch_size * config.seq_len
    self.flops_per_step = flops_per_token(cfg, config.seq_len) * self.tokens_per_step
    self.peak = measured_peak_flops()
    self.window_start, self.window_first = time.perf_counter(), start

  def __call__(self, step: int, metrics: dict, extra: dict | None = None) -> None:
    config = self.config
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if metrics.pop("finite") == 0.0:
      if config.nan_policy == "stop":
        raise TrainError(f"step {step}: loss is {metrics['loss']} (not finite); stopping. "
                         f"Params are those of step {step - 1}; the last checkpoint is "
                         f"{self.mngr.latest_step()}. Set nan_policy='skip' to skip such steps.")
      log(f"step {step}: non-finite loss skipped (nan_policy=skip)")
    if step % config.log_every and step != config.total_steps and not extra:
      return
    elapsed = time.perf_counter() - self.window_start
    steps_per_s = (step - self.window_first) / elapsed if elapsed > 0 else 0.0
    metrics["tokens_per_s"] = steps_per_s * self.tokens_per_step
    metrics["mfu"] = steps_per_s * self.flops_per_step / self.peak
    self.writer.write(step, {**metrics, **(extra or {})})
    eta = (config.total_steps - step) / steps_per_s if steps_per_s else 0.0
    extra_fields = "".join(f" | {k} {metrics[k]:.4f}" for k in ("ce", "dist")
                           if k in metrics and "dist" in metrics)
    log(f"step {step}/{config.total_steps} | loss {metrics['loss']:.4f}{extra_fields} | "
        f"{metrics['tokens_per_s']:,.0f} tok/s | MFU {100 * metrics['mfu']:.1f}% | "
        f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
    self.window_start, self.window_first = time.perf_counter(), step


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) training; returns the last validation metrics."""
  workdir = os.path.abspath(workdir)
  check_workdir(workdir)
  config.init_from = resolve_init_from(config.init_from, config.data.data_dir or None)
  cfg = model_config(config)
  if jax.process_index() == 0:
    files.write_text(os.path.join(workdir, "config.json"),
                     trained_config(config, cfg).to_json(indent=2))
    provenance.append(workdir)
  if cfg.lora_rank:
    log(f"LoRA: rank {cfg.lora_rank} on {','.join(cfg.lora_targets)}; base weights frozen")
  if not config.init_from:
    log(f"model: fresh {cfg.model_type} from scratch ({cfg.num_params:,} parameters; "
        "no init_from given)")
  tok = tokenizer_for(config, workdir)
  tok.check_fits(cfg.vocab_size)
  setup = setup_lib.from_config(config, cfg)

  data_cfg = pipeline.PipelineConfig(seq_len=config.seq_len, batch_size=config.batch_size,
                                     seed=config.seed, worker_count=config.data.worker_count,
                                     shard_by=config.data.shard_by)
  data_dir = config.data.data_dir or None
  train_docs = sources.documents(config.data.corpus, "train", data_dir)
  val_docs = sources.documents(config.data.corpus, "validation", data_dir)
  train_iter = iter(pipeline.make_dataset(train_docs, tok, data_cfg,
                                          model_vocab_size=cfg.vocab_size))
  log(f"data: {config.data.corpus}: {len(train_docs)} train / {len(val_docs)} validation "
      f"documents; {config.batch_size} x {config.seq_len} tokens per step on mesh "
      f"{dict(setup.mesh.shape)}")

  mngr = ckpt_lib.manager(workdir, config.keep_checkpoints, config.async_checkpointing)
  state, start = _initial_state(config, setup, mngr, train_iter, workdir)
  if jax.process_index() == 0:
    ckpt_lib.write_model_config(workdir, cfg)
  train_step = setup.train_step(setup.loss_fn(config.loss, state, tok, config.data.corpus,
                                              data_dir))
  evaluate = functools.partial(_validate, config, tok, data_cfg, val_docs, setup.eval_step(),
                               setup.mesh)
  writer = MetricsWriter(workdir, resume_step=start)
  preemption = Preemption()
  try:
    parts = _Parts(train_step, train_iter, evaluate, Reporter(config, cfg, writer, mngr, start),
                   mngr, preemption)
    last_val = _run(config, workdir, setup.mesh, state, start, parts)
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    preemption.restore()
  return last_val


@dataclasses.dataclass(frozen=True)
class _Parts:
  """What the loop calls each step: the jitted step, the data, validation, the progress
  report, the checkpoint manager and the preemption flag."""
  train_step: Callable
  train_iter: Any
  evaluate: Callable
  report: Reporter
  mngr: Any
  preemption: Preemption


def _run(config, workdir, mesh, state, start, parts: _Parts) -> dict:
  """Steps start+1..total_steps: metrics fetched one step late, validation, checkpoints,
  a clean stop on preemption; returns the last validation metrics."""
  train_step, train_iter, evaluate = parts.train_step, parts.train_iter, parts.evaluate
  report, mngr, preemption = parts.report, parts.mngr, parts.preemption
  config_dict = json.loads(config.to_json())
  batch_sharding = mesh_lib.batch_sharding(mesh)
  pending = None          # (step, device metrics) of the step before: fetched one step late
  run_start, last_val = time.perf_counter(), {}
  with jax.set_mesh(mesh):
    for step in range(start + 1, config.total_steps + 1):
      state, metrics = train_step(state, pipeline.to_global(next(train_iter), batch_sharding))
      if pending is not None:
        report(*pending)
      pending = (step, metrics)
      preempted = preemption.agreed()
      if step % config.eval_every == 0 or step % config.checkpoint_every == 0 \
          or step == config.total_steps or preempted:
        val = None
        if step % config.eval_every == 0 or step == config.total_steps:
          val = last_val = evaluate(state, step)
        report(*pending, extra=val)
        pending = None
        if step % config.checkpoint_every == 0 or step == config.total_steps:
          ckpt_lib.save(mngr, step, state, train_iter, config_dict)
        if preempted:
          if mngr.latest_step() != step:
            ckpt_lib.save(mngr, step, state, train_iter, config_dict, force=True)
          mngr.wait_until_finished()
          log(f"preempted: saved step {step} to {workdir}/checkpoints; rerun the same "
              "command to resume")
          return last_val
    if pending is not None:
      report(*pending)
    if config.total_steps == 0 and start == 0:
      # a zero-step run records its starting model (a table's "base" row) as a run
      last_val = evaluate(state, 0)
      ckpt_lib.save(mngr, 0, state, train_iter, config_dict)
  mngr.wait_until_finished()
  log(f"done: {config.total_steps} steps in {time.perf_counter() - run_start:.1f}s; "
      f"checkpoints in {workdir}/checkpoints")
  if last_val:
    log(f"final validation: loss {last_val['val_loss']:.4f} | ppl {last_val['val_ppl']:.2f} on "
        f"{config.data.corpus} (validation split, {int(last_val['val_tokens'])} tokens)")
  return last_val
