"""A tiny Llama-family model from scratch on the embedded corpus (all domains).

  python -m dft_jax.train --config=experiments/pretrain_tiny.py --workdir=runs/base
  python -m dft_jax.train --config=experiments/pretrain_tiny.py:steps=50 --workdir=/tmp/t

Needs the embedded corpora prepared (`python -m dft_jax.data.prepare`, all domains: the
tokenizer is trained on all five); trains and caches the tokenizer itself when it is missing.
"""

import ml_collections

from experiments import base


def config(*, model="tiny", steps=300,
           corpus="news,encyclopedia,legal,literary,aphorisms") -> ml_collections.ConfigDict:
  """Pretraining preset `model` of base.MODELS for `steps` on `corpus`."""
  c = base.base_config()
  c.model.update(base.MODELS[model])
  c.total_steps = steps
  c.data.corpus = corpus
  c.checkpoint_every = max(steps // 3, 1)
  c.eval_every = max(steps // 3, 1)
  return c


def get_config(arg=None):
  return config(**base.parse_arg(arg, config))
