"""Supervised fine-tuning (plain cross-entropy) of `init_from` on one target domain.

  python -m dft_jax.train --config=experiments/sft.py:domain=literary \
      --config.init_from=runs/base --workdir=runs/sft_literary

With no init_from it starts from a fresh tiny model, and says so. The domain must be prepared once (`python -m dft_jax.data.prepare --domains DOMAIN`; a run
on an unprepared one stops with that command).

The sweep (scripts/sweep.py): the base pretraining, then SFT over seeds 0..seeds-1.

  python scripts/sweep.py experiments/sft.py:domain=news,seeds=3 --root runs/sft_news
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402
from dft_jax import sweeps  # noqa: E402


def get_config(arg=None):
  a = base.parse_arg(arg, domain="literary", model="tiny", steps=100, lr=1e-3)
  return base.finetune_config(a)


def get_sweep(arg=None):
  a = base.parse_arg(arg, domain="literary", model="tiny", steps=100, lr=1e-3, seeds=3,
                     base_steps=300)
  config = "experiments/sft.py:" + sweeps.arg_string(domain=a.domain, model=a.model,
                                                      steps=a.steps, lr=a.lr)
  return [sweeps.base_run(a.model, a.base_steps)] + [
      sweeps.run(f"sft_s{seed}", config, row="SFT", seed=seed, init_from="{base}")
      for seed in range(a.seeds)]
