"""Evaluation like a paper: text metrics, the judge, feature-space divergences,
perplexity, tables and plots.

  text_metrics.py   rep-n, diversity, distinct-n, self-BLEU, Zipf, sentence lengths, unigram L2
  judge.py          a human-vs-model classifier: two-sample accuracy and pairwise win rate
  report.py         everything above for one set of samples against a human reference
  tables.py         Markdown / LaTeX tables with mean ± sd over seeds
  plots.py          sentence-length histograms, per-feature gaps, training curves
"""
