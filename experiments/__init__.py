"""The experiment configs (ml_collections): one file per paper table or ablation family.

A package installed with dft_jax (setup.cfg), so that a config file loaded by its path
(`--config=experiments/dft.py:domain=news`) imports its siblings (`from experiments import
base`) from any directory. A config file's `config(*, ...)` is its Python form, which the
others call with keywords; its `get_config(arg)` parses the command line's argument string
('domain=news,lam=0.2', base.parse_arg) into that call. Sweep files add `get_sweep(arg)`.
"""
