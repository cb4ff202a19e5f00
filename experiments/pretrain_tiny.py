"""A tiny Llama-family model from scratch on the embedded corpus (all domains).

  python -m dft_jax.train --config=experiments/pretrain_tiny.py --workdir=runs/base
  python -m dft_jax.train --config=experiments/pretrain_tiny.py:steps=50 --workdir=/tmp/t

Needs the embedded corpora prepared (`python -m dft_jax.data.prepare`, all domains: the
tokenizer is trained on all five); trains and caches the tokenizer itself when it is missing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402


def get_config(arg=None):
  a = base.parse_arg(arg, model="tiny", steps=300, corpus="news,encyclopedia,legal,literary,"
                     "aphorisms")
  c = base.base_config()
  c.model.update(base.MODELS[a.model])
  c.total_steps = a.steps
  c.data.corpus = a.corpus
  c.checkpoint_every = max(a.steps // 3, 1)
  c.eval_every = max(a.steps // 3, 1)
  return c
