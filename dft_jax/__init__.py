"""dft_jax: Distribution Fine-Tuning of decoder language models in JAX / Flax NNX."""

__version__ = "0.1.0"
