"""Data: tokenizers (and, next, corpora and the grain pipeline)."""
