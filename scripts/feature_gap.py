r"""How far a run's samples sit from the human reference, in the featurizer's terms.

  python scripts/feature_gap.py --workdir runs/sft_literary --workdir runs/dft_literary

Samples continuations of held-out prompts (validation split, fixed seed), featurizes them, and
prints the Sinkhorn divergence and MMD to the reference bank and the per-group standardized
gaps, one row per run.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from dft_jax import sampling
from dft_jax.losses import reference as reference_lib
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.evaluation import samples
from dft_jax.losses import divergences, features
from dft_jax.train import checkpoint

flags.DEFINE_multi_string("workdir", None, "Run directories.", required=True)
flags.DEFINE_string("corpus", None, "Reference corpus (default: the first run's data.corpus).")
flags.DEFINE_integer("prompts", 64, "Held-out prompts.")
flags.DEFINE_integer("prompt_len", 16, "Prompt length in tokens.")
flags.DEFINE_integer("window", 64, "Continuation length = reference window.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  first = FLAGS.workdir[0]
  with open(os.path.join(first, "config.json")) as f:
    corpus = FLAGS.corpus or json.load(f)["data"]["corpus"]
  tok = tokenizer_lib.load(os.path.join(first, "tokenizer.json"))
  ref = reference_lib.stats_for_corpus(corpus, tok, window=FLAGS.window)
  prompts, _, _ = samples.held_out(corpus, tok, num_prompts=FLAGS.prompts,
                                prompt_len=FLAGS.prompt_len, continuation_len=FLAGS.window)
  eos = tok.eos_id
  bank = ref.standardize(ref.bank_MxF)
  rows = []
  for workdir in FLAGS.workdir:
    model, cfg = checkpoint.load_model(workdir)
    out = sampling.generate(model, prompts, max_new_tokens=FLAGS.window, temperature=1.0,
                            rng=jax.random.key(FLAGS.seed), eos_id=eos, pad_id=eos)
    tables = ref.tables(tok, cfg.vocab_size)
    text = out.valid_BxC & (out.tokens_BxC != eos)  # reference windows hold no EOS
    feats = ref.standardize(np.asarray(features.featurize_batch(out.tokens_BxC, text, tables)))
    sink = float(divergences.sinkhorn(jnp.asarray(feats), jnp.asarray(bank))[0])
    mmd = float(divergences.mmd(jnp.asarray(feats), jnp.asarray(bank))[0])
    gaps = {g: float(np.abs(feats[:, [features.FEATURE_NAMES.index(n) for n in names]]
                            .mean(0)).mean()) for g, names in features.GROUPS.items()}
    rows.append({"run": workdir, "sinkhorn": sink, "mmd": mmd, **gaps})
  keys = list(rows[0])
  print("| " + " | ".join(keys) + " |")
  print("|" + "---|" * len(keys))
  for r in rows:
    print("| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                            for k in keys) + " |")
  print(json.dumps(rows))


if __name__ == "__main__":
  app.run(main)
