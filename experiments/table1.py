"""The paper's main table: base, SFT, DFT and the token-level baselines on one target domain.

  python scripts/reproduce_table.py --sweep experiments/table1.py --root runs/table1   # demo
  python scripts/reproduce_table.py --sweep experiments/table1.py:baselines=True,seeds=3 \
      --root runs/table1_full                                  # every row, 3 seeds (13 runs)
  python scripts/sweep.py experiments/table1.py:domain=news,seeds=3 --root runs/t1 --print

Rows: "base" (the pretrained model itself, run `base`), "SFT", "DFT (score-function)", and with
baselines=True "MixCE" and "TaiLr" (EMO: experiments/baselines.py). Every fine-tune starts from
`base` and is repeated over seeds 0..seeds-1, seed-major, so a sweep cut short already has each
row. Arguments: domain, model, seeds, steps (fine-tunes), base_steps, lam, baselines. The
defaults (one seed, no baselines: base, SFT, DFT) are the README's demo, ~10 min on 2 cores.

As a config it is the table's DFT run, for one run by hand:

  python -m dft_jax.train --config=experiments/table1.py:domain=news \
      --config.init_from=runs/table1/base --workdir=runs/table1/dft_s0
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base, dft  # noqa: E402
from dft_jax import sweeps  # noqa: E402


def _arg(arg):
  return base.parse_arg(arg, domain="literary", model="tiny", seeds=1, steps=100, base_steps=300,
                        lam=dft.LAM, baselines=False)


def _dft_arg(a):
  return sweeps.arg_string(domain=a.domain, model=a.model, steps=a.steps, lam=a.lam,
                           estimator="score_function")


def get_config(arg=None):
  return dft.get_config(_dft_arg(_arg(arg)))


def get_sweep(arg=None):
  a = _arg(arg)
  common = sweeps.arg_string(domain=a.domain, model=a.model, steps=a.steps)
  rows = [("sft", "SFT", f"experiments/sft.py:{common}"),
          ("dft", "DFT (score-function)", f"experiments/dft.py:{_dft_arg(a)}")]
  if a.baselines:
    rows += [("mixce", "MixCE", f"experiments/baselines.py:loss=mixce,{common}"),
             ("tailr", "TaiLr", f"experiments/baselines.py:loss=tailr,{common}")]
  runs = [sweeps.base_run(a.model, a.base_steps)]
  for seed in range(a.seeds):
    runs += [sweeps.run(f"{key}_s{seed}", config, row=row, seed=seed, init_from="{base}")
             for key, row, config in rows]
  return runs
