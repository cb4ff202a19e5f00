r"""The judge: a classifier trained to tell human text from model text.

It is a *proxy* for human preference, never the thing itself: a judge that cannot tell a run's
text from human text (two-sample accuracy 0.5) says the text's surface statistics match, not that
people would prefer it. Reports built on it must name it as a proxy too.

This module is the judge's public face; each job lives in its own module:
  judge_features.py    featurize(texts), style_stats(text): hashed n-grams + style statistics
  judge_classifier.py  train(human, model) -> Judge, Judge.p_human(texts): the logistic fit
  judge_accuracy.py    two_sample_accuracy(human, model): k-fold cross-validated accuracy of
                       the proxy (0.5 = cannot tell them apart)
  judge_pairwise.py    win_rate(judge, a, b): how often the proxy prefers run A's continuation
                       of a prompt to run B's, both presentation orders, ties reported;
                       pairwise(human, a, b): the same with judges cross-fitted on data disjoint
                       from the pairs they judge
"""

from dft_jax.evaluation.judge_accuracy import two_sample_accuracy
from dft_jax.evaluation.judge_classifier import L2, LEARNING_RATE, STEPS, Judge, train
from dft_jax.evaluation.judge_features import (DENSE_NAMES, N_BUCKETS, Features, featurize,
                                               style_stats)
from dft_jax.evaluation.judge_pairwise import pairwise, win_rate

__all__ = ["DENSE_NAMES", "L2", "LEARNING_RATE", "N_BUCKETS", "STEPS", "Features", "Judge",
           "featurize", "pairwise", "style_stats", "train", "two_sample_accuracy", "win_rate"]
