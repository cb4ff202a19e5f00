"""Token-level baselines on one target domain (rows of the paper table): MixCE, TaiLr, EMO.

  python -m dft_jax.train --config=experiments/baselines.py:loss=mixce,domain=literary \
      --config.init_from=runs/base --workdir=runs/mixce_literary

The sweep (scripts/sweep.py): the base pretraining, then each of LOSSES over seeds 0..seeds-1.

  python scripts/sweep.py experiments/baselines.py:domain=news,seeds=3 --root runs/baselines
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402
from dft_jax import sweeps  # noqa: E402

LOSSES = {"mixce": "MixCE", "tailr": "TaiLr", "emo": "EMO"}  # loss -> table row


def get_config(arg=None):
  a = base.parse_arg(arg, loss="mixce", domain="literary", model="tiny", steps=100, lr=1e-3,
                     eta=0.1, gamma=0.1)
  if a.loss not in LOSSES:
    raise ValueError(f"loss must be mixce, tailr or emo, got {a.loss!r}")
  c = base.finetune_config(a)
  c.loss.name = a.loss
  c.loss.eta = a.eta      # MixCE mixing weight of forward CE
  c.loss.gamma = a.gamma  # TaiLr threshold
  return c


def get_sweep(arg=None):
  a = base.parse_arg(arg, domain="literary", model="tiny", steps=100, lr=1e-3, seeds=3,
                     base_steps=300)
  runs = [sweeps.base_run(a.model, a.base_steps)]
  for seed in range(a.seeds):
    runs += [sweeps.run(f"{loss}_s{seed}", "experiments/baselines.py:" + sweeps.arg_string(
        loss=loss, domain=a.domain, model=a.model, steps=a.steps, lr=a.lr), row=row, seed=seed,
        init_from="{base}") for loss, row in LOSSES.items()]
  return runs
