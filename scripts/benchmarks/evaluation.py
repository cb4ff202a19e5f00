"""table_bootstrap: the paper table's clustered bootstrap, per draw as it was against batched."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import load_average
from dft_jax.data import corpora
from dft_jax.evaluation import drawn, intervals, report, self_bleu, text_metrics


def _texts(domain: str, n: int, words: int = 40) -> list[str]:
  """`n` consecutive `words`-word cuts of a prepared domain's test documents."""
  pieces = [d.split() for d in corpora.load_split(domain, "test")]
  flat = [w for p in pieces for w in p]
  return [" ".join(flat[i * words:(i + 1) * words]) for i in range(n)]


def table_bootstrap(opts) -> dict:
  """Seconds for the bootstrap of one row against SFT as the table computes it: the feature
  Sinkhorn + MMD² of 200 clustered draws of 256 prompts in 55 documents (the narrative test
  split's layout) for the row, SFT and the human floor, and self-BLEU-4 and the slop ratio of
  the row and SFT on every draw. Before: one jitted divergence per draw (a compile per distinct
  draw size) on 2 threads, the text metrics recomputed from the drawn texts; after: drawn.py's
  counts form, one vmapped call per 64 draws, the texts' n-grams counted once. Each side runs
  once from cleared caches, as in a fresh table process."""
  del opts
  rng = np.random.default_rng(0)
  n = 256
  doc_ids = np.sort(rng.integers(0, 55, n))
  draws = [np.arange(n)] + intervals.clustered(doc_ids, 200, seed=0)
  feats = [rng.normal(size=(n, 28)).astype(np.float32) for _ in range(4)]  # row, SFT, human x2
  pairs = [(feats[0], feats[2]), (feats[1], feats[2]), (feats[2], feats[3])]
  texts = [_texts("encyclopedia", 2 * n)[i::2] for i in (0, 1)]
  human = _texts("news", n)

  def before():
    with ThreadPoolExecutor(2) as pool:
      for x, y in pairs:
        list(pool.map(lambda d: report._divergences(jnp.asarray(x[d]), jnp.asarray(y[d])), draws))
    for t in texts:
      for d in draws:
        picked = [t[i] for i in d]
        text_metrics.self_bleu(picked, 4)
        text_metrics.slop_ratio(picked, [human[i] for i in d])

  def after():
    for x, y in pairs:
      drawn.divergences_of_draws(x, y, draws)
    for t in texts:
      bleu, slop = self_bleu.SelfBleu(t, 4), text_metrics.Slop(t, human)
      for d in draws:
        bleu(d)
        slop.ratio(d, d)

  seconds = {}
  for name, fn in (("before", before), ("after", after)):
    jax.clear_caches()
    start = time.perf_counter()
    fn()
    seconds[name] = time.perf_counter() - start
  print(f"table_bootstrap: {seconds['before']:.1f} s per draw vs {seconds['after']:.1f} s "
        f"batched: {seconds['before'] / seconds['after']:.2f}x ({load_average()})")
  return {"bootstrap_before_s": seconds["before"], "bootstrap_after_s": seconds["after"],
          "bootstrap_ratio": seconds["before"] / seconds["after"]}
