"""Data: the embedded corpora (corpora.py reads them, prepare.py makes them with cleaning.py),
corpus names (sources.py), TFDS text datasets, tokenizers, the grain pipeline, atomic files."""
