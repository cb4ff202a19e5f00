"""The wiring the headline table runs through: verdicts on inputs whose intervals are known
by construction, the seed average by hand, the default reference path (statistics of the
corpus's train split, cached, bound to the tokenizer), and DFT trained at the deployed
decoding."""

import os

import numpy as np
import pytest

import dft_setup as S
from dft_jax.data import sources
from dft_jax.evaluation import comparison, intervals
from dft_jax.losses import reference as reference_lib

N = 40


def _metric(values):
  values = np.asarray(values, float)
  return lambda idx: float(values[idx].mean())


def test_verdicts_are_the_ones_the_constructed_intervals_imply():
  rng = np.random.RandomState(0)
  base = rng.rand(N)
  alternating = np.where(np.arange(N) % 2, 1.0, -1.0) * 0.2
  sft = {"diversity": _metric(base), "sent_len_var": _metric(base + 5.0),
         "judge_accuracy": _metric(0.7 + 0 * base)}
  dft = {"diversity": _metric(base + 0.1),           # up on every prompt: holds
         "sent_len_var": _metric(base + 6.0),        # further from human on every prompt
         "judge_accuracy": _metric(0.7 + alternating)}  # no change on average: inconclusive
  human = {"sent_len_var": _metric(base)}
  draws = intervals.indices(N, 500, 0)
  within = {"delta": 0.01, "lo": 0.0, "hi": 0.02}
  claims = intervals.claims(sft, dft, human, draws, N, ppl_ratio=within)
  got = {c["claim"].split(" (")[0]: c["verdict"] for c in claims}
  assert got == {"diversity up": "holds",
                 "sentence-length variance toward human": "does not hold",
                 "perplexity not worse": "holds",
                 "judge nearer 0.5": "inconclusive"}
  worse = intervals.claims(sft, dft, human, draws, N,
                           ppl_ratio={"delta": 0.05, "lo": 0.04, "hi": 0.06})
  assert worse[2]["verdict"] == "does not hold"
  printed = intervals.summarize(claims).splitlines()
  assert [line.split("**")[1] for line in printed] == [c["verdict"] for c in claims]


def test_seed_mean_is_the_average_of_the_seeds_on_the_same_draw():
  a, b = np.arange(N, dtype=float), np.arange(N, dtype=float) ** 2
  mean = comparison._seed_mean([{"m": _metric(a)}, {"m": _metric(b)}])["m"]
  idx = np.asarray([0, 3, 3, 7])
  assert mean(idx) == pytest.approx(((0 + 3 + 3 + 7) / 4 + (0 + 9 + 9 + 49) / 4) / 2)


@pytest.fixture()
def text_corpus(tmp_path):
  """A directory of .txt documents (a corpus as users give one) and a data dir."""
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  for i, doc in enumerate(S.short_sentence_docs(n=120)):
    (corpus / f"doc{i:03d}.txt").write_text(doc)
  return str(corpus), str(tmp_path / "data")


def test_default_reference_path_is_the_train_split_cached_and_bound_to_its_tokenizer(
    text_corpus, monkeypatch):
  corpus, data = text_corpus
  tok = S.tokenizer()
  stats = reference_lib.stats_for_corpus(corpus, tok, window=16, data_dir=data)
  train = sources.documents(corpus, "train", data)
  validation = sources.documents(corpus, "validation", data)
  assert len(train) and len(validation)
  expected = reference_lib.compute_stats(train, tok, window=16, corpus=corpus)
  np.testing.assert_array_equal(stats.bank_MxF, expected.bank_MxF)
  cached = os.listdir(os.path.join(data, "stats"))
  assert len(cached) == 1 and tok.fingerprint in cached[0]
  # reused, not recomputed
  monkeypatch.setattr(reference_lib, "compute_stats",
                      lambda *a, **k: pytest.fail("recomputed a cached reference"))
  again = reference_lib.stats_for_corpus(corpus, tok, window=16, data_dir=data)
  np.testing.assert_array_equal(again.bank_MxF, stats.bank_MxF)
  # a cache made with another tokenizer is refused, not used
  own = tok.fingerprint
  other = S.tokenizer()
  monkeypatch.setattr(type(other), "fingerprint", property(lambda self: "another"))
  path = os.path.join(data, "stats", cached[0])
  os.replace(path, path.replace(own, "another"))
  with pytest.raises(reference_lib.StatsError, match="tokenizer"):
    reference_lib.stats_for_corpus(corpus, other, window=16, data_dir=data)


def test_dft_without_a_stats_file_trains_on_its_corpus(text_corpus):
  import jax
  from test_dft import _setup
  corpus, data = text_corpus
  tok = S.tokenizer()
  loss_cfg = S.loss_config("")
  setup = _setup(loss_cfg)
  state = setup.init_state(seed=0)
  step = setup.train_step(setup.loss_fn(loss_cfg, state, tok, corpus, data))
  batch = S.batch(tok, S.short_sentence_docs())
  with jax.set_mesh(setup.mesh):
    for _ in range(2):
      state, metrics = step(state, batch)
  assert int(state.step) == 2 and np.isfinite(float(metrics["dist"]))
  assert os.listdir(os.path.join(data, "stats"))


def test_dft_at_the_deployed_decoding_teaches_a_model_to_end_sentences(tmp_path):
  """The direction test at T = 0.7 / top-p = 0.9, the decoding the table's DFT row uses."""
  from test_dft import _train
  tok, docs, path = S.reference(tmp_path)
  history = _train(S.loss_config(path, temperature=0.7, top_p=0.9), tok, docs, steps=16)
  (p0, _), (p_end, _) = history[0], history[-1]
  assert p0 < 0.05 and p_end > 2 * p0, history
