"""Robust features: clipping the standardized statistics bounds what one degenerate sample can
do to the divergence (training's loss.feature_clip and the table's FeatureSpace alike), and the
degenerate-sample rate counts such samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dft_jax.evaluation import text_metrics
from dft_jax.losses import dft, divergences, reference

N, F, CLIP = 64, 28, 5.0


def _sinkhorn(x, y):
  return float(divergences.sinkhorn(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))[0])


def test_clipping_bounds_one_outliers_effect_on_the_divergence():
  rng = np.random.default_rng(0)
  mean_F, sd_F = rng.normal(size=F) * 3, rng.uniform(0.5, 2.0, size=F)
  human_raw = mean_F + sd_F * rng.normal(size=(N, F))
  sample_raw = mean_F + sd_F * rng.normal(size=(N, F))
  looped = sample_raw.copy()
  looped[0, :4] = mean_F[:4] + 60 * sd_F[:4]  # a repetition loop: 60 sds out on 4 statistics

  def effect(clip):
    h = reference.standardize(human_raw, mean_F, sd_F, clip)
    return (_sinkhorn(reference.standardize(looped, mean_F, sd_F, clip), h)
            - _sinkhorn(reference.standardize(sample_raw, mean_F, sd_F, clip), h))

  raw, clipped = effect(0.0), effect(CLIP)
  # Moving one of N points changes a transport cost by at most its mass 1/N times the largest
  # squared distance it can reach: within the clip box, F * (2 * clip)^2.
  assert 0 <= clipped <= F * (2 * CLIP) ** 2 / N
  assert raw > 20 * clipped   # unclipped, the one sample dominates
  assert raw > 50.0           # ~ 4 * 60^2 / 64 = 225 before entropic smoothing


def test_the_losss_reference_clips_samples_like_the_bank():
  cfg = dft.config(feature_clip=CLIP)
  model_cfg = type("M", (), dict(vocab_size=64, hidden_size=8, num_layers=1))()
  ref = reference.placeholder(cfg, model_cfg, bank_rows=16)
  assert ref.clip == CLIP
  raw_BxF = jnp.asarray(np.linspace(-100, 100, 2 * F).reshape(2, F), jnp.float32)
  std = jax.jit(ref.standardize)(raw_BxF)
  assert float(jnp.abs(std).max()) == CLIP
  inside = jnp.zeros((2, F)).at[0, 0].set(4.0)
  np.testing.assert_array_equal(ref.standardize(inside), inside)  # within the box: unchanged
  with pytest.raises(ValueError, match="feature_clip"):
    dft.validate(dft.config(feature_clip=-1.0))


def test_degenerate_rate_counts_repetition_loops():
  loop = "the cat sat on the mat " * 8
  prose = ("Now Saul was sore afraid of the Philistines, and he gathered all Israel together, "
           "and they pitched in Gilboa; and when he saw the host he trembled greatly.")
  genealogy = ("Arpachshad lived thirty-five years and became the father of Shelah. Shelah lived "
               "thirty years and became the father of Eber. Eber lived thirty-four years and "
               "became the father of Peleg.")
  assert text_metrics.rep_n([loop], 4) >= 50 > text_metrics.rep_n([genealogy], 4)
  assert text_metrics.degenerate_rate([loop, prose, genealogy, "short"]) == 0.25
  assert text_metrics.degenerate_rate([prose]) == 0.0
  assert text_metrics.compute([loop, prose], [prose])["degenerate"] == 0.5
