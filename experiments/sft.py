"""Supervised fine-tuning (plain cross-entropy) of `init_from` on one target domain.

  python -m dft_jax.train --config=experiments/sft.py:domain=literary \
      --config.init_from=runs/base --workdir=runs/sft_literary

With no init_from it starts from a fresh tiny model, and says so.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402


def get_config(arg=None):
  a = base.parse_arg(arg, domain="literary", model="tiny", steps=100, lr=1e-3)
  return base.finetune_config(a)
