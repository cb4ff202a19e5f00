"""ml-collections experiment configs: one file per paper table / ablation family."""
