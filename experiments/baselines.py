"""Token-level baselines on one target domain (rows of the paper table): MixCE, TaiLr, EMO.

  python -m dft_jax.train --config=experiments/baselines.py:loss=mixce,domain=literary \
      --config.init_from=runs/base --workdir=runs/mixce_literary
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402


def get_config(arg=None):
  a = base.parse_arg(arg, loss="mixce", domain="literary", model="tiny", steps=100, lr=1e-3,
                     eta=0.1, gamma=0.1)
  if a.loss not in ("mixce", "tailr", "emo"):
    raise ValueError(f"loss must be mixce, tailr or emo, got {a.loss!r}")
  c = base.finetune_config(a)
  c.loss.name = a.loss
  c.loss.eta = a.eta      # MixCE mixing weight of forward CE
  c.loss.gamma = a.gamma  # TaiLr threshold
  return c
