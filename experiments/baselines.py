"""Baselines on one target domain (rows of the paper table): the token-level MixCE, TaiLr,
EMO and DyFT, and EBFT-style feature matching.

  dyft  *Dynamic* Fine-Tuning (Wu et al. 2025): CE weighted by sg(p(y)). Not this library's
        Distribution Fine-Tuning, despite the initials.
  ebft  "Matching Features, Not Tokens" (EBFT, Jelassi et al. 2026) at our scale: the frozen
        starting model's pooled hidden states as features, a kernel two-sample comparison
        (energy distance) with the reference, REINFORCE with a leave-one-out baseline — i.e.
        experiments/dft.py with features=embedding, divergence=energy, estimator
        score_function, at the same λ, steps and decoding as the DFT row it is compared with.

  python -m dft_jax.train --config=experiments/baselines.py:loss=mixce,domain=literary \
      --config.init_from=runs/base --workdir=runs/mixce_literary

The sweep (scripts/sweep.py): the base pretraining, then each of LOSSES over seeds 0..seeds-1.

  python scripts/sweep.py experiments/baselines.py:domain=news,seeds=3 --root runs/baselines
"""

import ml_collections

from dft_jax import sweeps
from experiments import base, dft

LOSSES = {"mixce": "MixCE", "tailr": "TaiLr", "emo": "EMO", "dyft": "DyFT",
          "ebft": "EBFT-style"}  # loss -> table row
TOKEN_LEVEL = ("mixce", "tailr", "emo", "dyft")


def config(*, loss="mixce", domain="literary", model="tiny", steps=100, lr=1e-3, eta=0.1,
           gamma=0.1, lam=dft.LAM, estimator="score_function", temperature=1.0, top_p=1.0,
           gen_len=64, dist_batch=16, clip=0.0) -> ml_collections.ConfigDict:
  """One baseline of LOSSES on `domain`; ebft is experiments/dft.py's config with embedding
  features and the energy distance."""
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
  if loss == "ebft":
    return dft.config(domain=domain, model=model, steps=steps, lr=lr, lam=lam,
                      estimator=estimator, temperature=temperature, top_p=top_p,
                      gen_len=gen_len, dist_batch=dist_batch, features="embedding",
                      divergence="energy", clip=clip)
  c = base.finetune_config(domain=domain, model=model, steps=steps, lr=lr)
  c.loss.name = loss
  c.loss.eta = eta      # MixCE mixing weight of forward CE
  c.loss.gamma = gamma  # TaiLr threshold
  return c


def get_config(arg=None):
  return config(**base.parse_arg(arg, config))


def get_sweep(arg=None):
  a = base.parse_arg(arg, domain="literary", model="tiny", steps=100, lr=1e-3, seeds=3,
                     base_steps=300)
  runs = [sweeps.base_run(a.model, a.base_steps)]
  for seed in range(a.seeds):
    runs += [sweeps.run(f"{loss}_s{seed}", "experiments/baselines.py:" + sweeps.arg_string(
        loss=loss, domain=a.domain, model=a.model, steps=a.steps, lr=a.lr), row=row, seed=seed,
        init_from="{base}") for loss, row in LOSSES.items() if loss in TOKEN_LEVEL]
  return runs
