"""dft_jax: Distribution Fine-Tuning of decoder language models in JAX / Flax NNX.

Layers, lowest first; a module imports only from its own layer or lower ones
(tests/test_layers.py checks it):
  data        corpora (reading prepared ones; `python -m dft_jax.data.prepare` makes them),
              TFDS text datasets, tokenizers, the grain pipeline, atomic files
  models      the decoder and its Hugging Face / GGUF / native checkpoints
  sampling    KV-cache decoding, temperature / top-k / top-p
  losses      CE, the DFT objective (reference, features, divergences), token-level baselines
  train       mesh, state, the jitted step, checkpoints, the loop (setup.py builds a run)
  evaluation  samples of trained runs, metrics, judge, tables, plots
  CLIs        train/__main__, evaluate, sample, convert, stats, sweeps, aot

Shapes in names (one legend for the whole package): B batch rows, T sequence (query) length,
S key length (cache size), P prompt length, C continuation (generated) length, W window
length, V vocabulary, L layers, D model width, H head dim, N query heads and K key/value heads
(G = N // K per group) and F MLP width inside the decoder's parameters (models/decoder.py;
the names are checkpoint keys), N / M rows of two point clouds (M: the reference bank's
rows wherever a bank is one of them) and F featurizer statistics everywhere else, E embedding
width, X width of a feature space's points, R Zipf rank bins, Z nonzero entries of a sparse
row.
"""

__version__ = "0.1.0"

LAYERS = (
    ("data",),
    ("models",),
    ("sampling",),
    ("losses",),
    ("train",),
    ("evaluation",),
    ("", "__main__", "evaluate", "sample", "convert", "stats", "sweeps", "aot"),
)
