import os
import sys

# the same numbers on a machine with an accelerator: no TF32 matmuls under fp32 tolerances
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
  """name -> (directory of a saved tiny random HF model of that variant, the torch model)."""
  import hf_reference
  cache = {}

  def get(name):
    if name not in cache:
      path = tmp_path_factory.mktemp(name)
      cache[name] = (str(path), hf_reference.save(name, path))
    return cache[name]

  return get
