"""The shared base of every experiment, and the big_vision-style argument strings.

  experiments/sft.py:domain=news,model=tiny   ->   get_config("domain=news,model=tiny")
                                               ->   sft.config(domain="news", model="tiny")
"""

from __future__ import annotations

import inspect
import os
import typing

import ml_collections

from dft_jax.models import presets, pretrained

# Model presets: decoder architecture only; numerics (dtype, remat) live in config.model too.
MODELS = {
    # ~1.2M params: pretrains in a couple of minutes on 2 CPU cores
    "tiny": dict(model_type="llama", vocab_size=4096, hidden_size=128, intermediate_size=384,
                 num_layers=4, num_heads=4, num_kv_heads=2, head_dim=32),
    # the benchmark's medium config
    "medium": dict(model_type="llama", vocab_size=8192, hidden_size=512, intermediate_size=1408,
                   num_layers=8, num_heads=8, num_kv_heads=8, head_dim=64),
    # published architectures without their weights (dft_jax.models.presets): for AOT compiles
    # (python -m dft_jax.aot) and from-scratch runs at their shapes
    **presets.PRESETS,
}


# Fine-tuning a pretrained model on 2 CPU cores: a 135M-parameter train step on 4 x 128
# tokens takes ~4 s there, so smaller batches and frequent logging.
PRETRAINED_RUN = dict(batch_size=4, seq_len=128, eval_batches=4, log_every=5)


def _parameters(fn) -> dict:
  """{name: (type, default)} of fn's parameters with a default; a None default ("the model's
  default") takes its type from its annotation, `T | None`."""
  out = {}
  for name, p in inspect.signature(fn, eval_str=True).parameters.items():
    if p.default is p.empty:
      continue
    kinds = [t for t in typing.get_args(p.annotation) if t is not type(None)]
    if p.default is None and len(kinds) != 1:
      raise TypeError(f"{fn.__qualname__}: {name}=None needs an annotation `T | None`")
    out[name] = (kinds[0] if p.default is None else type(p.default), p.default)
  return out


def parse_arg(arg: str | None, fn=None, **defaults) -> ml_collections.ConfigDict:
  """'a=1,b=news' -> ConfigDict(a=1, b='news'): the arguments of config function `fn` (its
  defaults) and `defaults`, each typed by its default (or annotation). An unknown key or a
  value not of its type is one ValueError naming the argument."""
  params = {**(_parameters(fn) if fn else {}),
            **{k: (type(v), v) for k, v in defaults.items()}}
  out = ml_collections.ConfigDict({k: v for k, (_, v) in params.items()})
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep:
      raise ValueError(f"config argument {item!r} is not key=value")
    if key not in params:
      raise ValueError(f"unknown config argument {key!r}; known: {', '.join(sorted(params))}")
    kind = params[key][0]
    try:
      out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError:
      raise ValueError(f"config argument {key}={value!r}: expected {kind.__name__}") from None
  return out


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.total_steps = 300
  c.batch_size = 16                  # global, in rows of seq_len tokens
  c.seq_len = 128
  c.log_every = 10
  c.checkpoint_every = 100
  c.keep_checkpoints = 3
  c.eval_every = 100
  c.eval_batches = 8
  c.mesh_shape = (1, -1, 1)          # ('data', 'fsdp', 'tensor'); one entry may be -1
  c.init_from = ""                   # HF dir | dft_jax model dir | another run's workdir | ""
  c.nan_policy = "stop"              # stop | skip
  c.async_checkpointing = True

  c.model = ml_collections.ConfigDict(dict(MODELS["tiny"]))
  # "auto": float32 / no remat / blockwise attention on CPU; bfloat16 compute (fp32 master
  # weights) / full remat / the platform's attention kernel on TPU and GPU
  c.model.dtype = "auto"             # compute dtype
  c.model.param_dtype = "float32"
  c.model.remat_policy = "auto"      # none | full | dots | dots_with_no_batch_dims | auto
  c.model.attention_impl = "auto"    # xla | splash | splash_interpret | cudnn | auto
  c.model.layer_loop = "auto"        # unrolled | scan (one lax.scan over the blocks) | auto
  c.model.lora_rank = 0              # > 0: train only LoRA adapters of this rank
  c.model.lora_alpha = 16.0
  c.model.lora_targets = ("q", "k", "v", "o")

  c.data = ml_collections.ConfigDict()
  c.data.corpus = "news"             # embedded domain(s), comma-separated | text dir | tfds:NAME
  c.data.tokenizer = ""              # tokenizer.json; "" = init_from's, else a BPE trained once
  c.data.tokenizer_corpus = "news,encyclopedia,legal,literary,aphorisms"
  c.data.data_dir = ""               # "" = $DFT_JAX_DATA or ~/.cache/dft_jax
  c.data.worker_count = 0
  c.data.shard_by = "rows"           # over hosts: "rows" of one global stream | "documents"

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 3e-3
  c.optim.warmup_steps = 30
  c.optim.decay = "cosine"           # cosine | linear | constant
  c.optim.min_lr_ratio = 0.1
  c.optim.b1 = 0.9
  c.optim.b2 = 0.95
  c.optim.eps = 1e-8
  c.optim.weight_decay = 0.1
  c.optim.clip_norm = 1.0
  c.optim.grad_accum_steps = 1

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "ce"
  return c


def model_setup(c: ml_collections.ConfigDict, model: str) -> None:
  """A preset of MODELS (trained here), a pretrained model of `pretrained.MODELS`, or your own
  model by its path: a Hugging Face directory, a GGUF file, a dft_jax model directory or a
  run's workdir (for these the architecture and tokenizer come with it: init_from)."""
  if pretrained.is_model_path(model):
    c.init_from = os.path.abspath(model)
    c.update(PRETRAINED_RUN)
    return
  if model in pretrained.MODELS:
    c.init_from = pretrained.require(model)
    c.update(PRETRAINED_RUN)
    return
  if model not in MODELS:
    raise ValueError(f"unknown model {model!r}; presets: {', '.join(MODELS)}; pretrained: "
                     f"{', '.join(pretrained.MODELS)}")
  c.model.update(MODELS[model])


def finetune_config(*, domain: str, model: str, steps: int,
                    lr: float) -> ml_collections.ConfigDict:
  """The shared fine-tuning setup of sft.py and dft.py. `domain` is an embedded domain or your
  corpus: a folder of .txt files (one document each; split 90/5/5 into train/validation/test
  by file)."""
  c = base_config()
  model_setup(c, model)
  c.data.corpus = domain
  c.total_steps = steps
  c.optim.lr = lr
  c.optim.warmup_steps = max(steps // 10, 1)
  c.checkpoint_every = max(steps // 2, 1)
  c.eval_every = max(steps // 2, 1)
  if pretrained.is_pretrained(model):  # one 1.6 GB state save per run, not two
    c.checkpoint_every = c.eval_every = max(steps, 1)
    c.keep_checkpoints = 1
  return c
