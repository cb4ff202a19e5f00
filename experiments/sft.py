"""Supervised fine-tuning (plain cross-entropy) of `init_from` on one target domain.

  python -m dft_jax.train --config=experiments/sft.py:domain=literary \
      --config.init_from=runs/base --workdir=runs/sft_literary

With no init_from it starts from a fresh tiny model, and says so. The domain must be prepared
once (`python -m dft_jax.data.prepare --domains DOMAIN`; a run on an unprepared one stops with
that command).

The sweep (scripts/sweep.py): the base pretraining, then SFT over seeds 0..seeds-1.

  python scripts/sweep.py experiments/sft.py:domain=news,seeds=3 --root runs/sft_news
"""

import ml_collections

from dft_jax import sweeps
from experiments import base


def config(*, domain="literary", model="tiny", steps=100, lr=1e-3) -> ml_collections.ConfigDict:
  """Plain cross-entropy fine-tuning on `domain` (base.finetune_config)."""
  return base.finetune_config(domain=domain, model=model, steps=steps, lr=lr)


def get_config(arg=None):
  return config(**base.parse_arg(arg, config))


def get_sweep(arg=None):
  a = base.parse_arg(arg, config, seeds=3, base_steps=300)
  run_config = "experiments/sft.py:" + sweeps.arg_string(domain=a.domain, model=a.model,
                                                          steps=a.steps, lr=a.lr)
  return [sweeps.base_run(a.model, a.base_steps)] + [
      sweeps.run(f"sft_s{seed}", run_config, row="SFT", seed=seed, init_from="{base}")
      for seed in range(a.seeds)]
