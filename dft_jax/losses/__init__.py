"""Training objectives. Each is `loss_fn(model, batch, rng, step, anchor=None) -> (loss,
metrics)`, picked by `config.loss.name` through `make`; `anchor` is the starting model when the
objective asks for one (`needs_anchor`).

Reading guide: the default DFT objective (experiments/dft.py: statistics features, Sinkhorn,
the score-function estimator), end to end, in the order a reader opens the files:

  1. losses/__init__.py   this file: `make` picks the objective by loss.name
  2. losses/dft.py        its config and checks, `score_function` (sample, featurize, compare
                          with the bank, weight log p by each sample's first variation), `loss`
                          (CE + lambda * that surrogate) and `make`
  3. losses/reference.py  the human reference: the statistics bank of the corpus, `standardize`,
                          the bank as points of the feature space (`Reference`, built once)
  4. losses/features.py   the featurizer: 28 statistics of a token window, in 5 groups
  5. losses/divergences.py  the debiased Sinkhorn divergence (ott's sinkdiv) and the
                          leave-one-out baseline

Shared with other objectives: cross_entropy.py (the fused LM-head CE) and dft_jax/sampling.py
(the KV-cache decoder that draws the samples). Only for other settings: embedding.py
(loss.features=embedding|both), sinkhorn_fast.py + blocked_cost.py (loss.sinkhorn_solver),
token_level.py (the baselines). `scripts/objective_footprint.py` measures what runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from dft_jax.losses import cross_entropy, dft, token_level

LossFn = Callable  # (model, batch, rng, step, anchor=None) -> (scalar loss, scalar metrics)


def needs_anchor(loss_cfg) -> bool:
  """Whether the train state must keep a copy of the starting params (a KL anchor, or the
  frozen embedder of embedding features)."""
  return loss_cfg.get("kl_beta", 0.0) > 0 or loss_cfg.get("features", "stats") != "stats"


@dataclasses.dataclass
class Context:
  """What some objectives need beyond the configs: the run's tokenizer and data."""
  tokenizer: Any = None
  corpus: str = ""
  data_dir: str | None = None
  starting_model: Callable | None = None   # () -> the model as training starts (embeddings)
  reference_documents: Any = None          # documents of the embedding bank (default: corpus)
  reference: Any = None                    # a prebuilt reference.Reference (AOT placeholders)
  eos_id: int | None = None                # default: the tokenizer's

  def eos(self) -> int:
    return self.tokenizer.eos_id if self.eos_id is None else self.eos_id


def make(loss_cfg, model_cfg, context: Context | None = None) -> LossFn:
  registry = {"ce": cross_entropy.make, "dft": dft.make, "mixce": token_level.make,
              "tailr": token_level.make, "emo": token_level.make, "dyft": token_level.make}
  name = loss_cfg.name
  if name not in registry:
    raise ValueError(f"unknown loss.name {name!r}; available: {', '.join(sorted(registry))}")
  return registry[name](loss_cfg, model_cfg, context or Context())
