"""DFT ablations: one knob at a time around the reference DFT run, all from one base model.

  python scripts/sweep.py experiments/ablations.py:family=lam --root runs/ablations
  python scripts/sweep.py experiments/ablations.py:family=all,seeds=3 --root runs/abl --print

Families (arg family=NAME | all):
  lam         lambda in 0.0005, 0.002, 0.01, 0.05, 0.2
  epsilon     Sinkhorn epsilon (relative to the mean cost) in 0.01, 0.05, 0.2
  groups      leave one feature group out (each of features.GROUPS)
  estimator   score_function, straight_through, expected
  divergence  sinkhorn, mmd, energy
  mode        joint, alternate (the distribution term every loss.every steps)
  gen_len     continuation length G = reference window in 32, 64, 128
  features    the feature space: stats, embedding (the frozen starting model's hidden
              states), both
The reference setting (REFERENCE: experiments/dft.py's defaults, all groups) is every family's
point of comparison; it is run once, as `ref_s{seed}` (row "reference"), and each family adds
its other values (`lam0.2_s0`, `no_entropy_s0`, `mmd_s0`, ...). Knobs that experiments/dft.py's
arg does not expose go through --config.loss.* overrides; loss.groups as a tuple literal, which
config_flags parses with ast.literal_eval: '--config.loss.groups=("word_frequency", "entropy")'.
"""

from dft_jax import sweeps
from dft_jax.losses import features
from experiments import base, dft

# family -> (how it is set: an arg of experiments/dft.py or a config override, its values)
FAMILIES = {
    "lam": ("arg:lam", (0.0005, 0.002, 0.01, 0.05, 0.2)),
    "epsilon": ("loss.epsilon", (0.01, 0.05, 0.2)),
    "groups": ("loss.groups", tuple(tuple(g for g in features.GROUPS if g != left_out)
                                    for left_out in features.GROUPS)),
    "estimator": ("arg:estimator", ("score_function", "straight_through", "expected")),
    "divergence": ("arg:divergence", ("sinkhorn", "mmd", "energy")),
    "mode": ("arg:mode", ("joint", "alternate")),
    "gen_len": ("loss.gen_len", (32, 64, 128)),
    "features": ("arg:features", ("stats", "embedding", "both")),
}
_DEFAULTS = dft.dft_loss()  # the reference point: the loss's own defaults at dft.LAM
REFERENCE = {family: _DEFAULTS[family] for family in FAMILIES}
SYMBOLS = {"lam": "λ", "epsilon": "ε", "gen_len": "G"}


def _label(family, value):
  """(name part, table row) of one value of a family."""
  if family == "groups":
    left_out, = set(features.GROUPS) - set(value)
    return f"no_{left_out}", f"w/o {left_out}"
  if family in SYMBOLS:
    return f"{family}{value}", f"{SYMBOLS[family]}={value}"
  return value, {"mmd": "MMD", "energy": "energy distance", "embedding": "embedding features",
                 "both": "stats + embedding"}.get(value, value.replace("_", "-"))


def get_sweep(arg=None):
  a = base.parse_arg(arg, family="all", domain="literary", model="tiny", seeds=1, steps=100,
                     base_steps=300)
  if a.family != "all" and a.family not in FAMILIES:
    raise ValueError(f"unknown ablation family {a.family!r}; known: all, {', '.join(FAMILIES)}")
  common = dict(domain=a.domain, model=a.model, steps=a.steps)
  # (name, row, dft.py arg, overrides): the reference first, then each family's other values
  variants = [("ref", "reference", sweeps.arg_string(**common), {})]
  for family in FAMILIES if a.family == "all" else [a.family]:
    how, values = FAMILIES[family]
    for value in values:
      if value == REFERENCE[family]:
        continue
      name, row = _label(family, value)
      if how.startswith("arg:"):
        variants.append((name, row, sweeps.arg_string(**common, **{how[4:]: value}), {}))
      else:
        variants.append((name, row, sweeps.arg_string(**common), {how: value}))
  runs = [sweeps.base_run(a.model, a.base_steps)]
  for seed in range(a.seeds):
    runs += [sweeps.run(f"{name}_s{seed}", f"experiments/dft.py:{dft_arg}", row=row, seed=seed,
                        init_from="{base}", **overrides)
             for name, row, dft_arg, overrides in variants]
  return runs
