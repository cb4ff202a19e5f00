"""The parts of scripts/bench.py, one module per subject; each part is `fn(Options) -> dict`
of its JSON keys, and prints its own line.

  common.py      Options, A/B alternation, the load average
  train_step.py  build_train_step: every builder call (mesh, state, loss, jitted step) of the
                 benchmark; step_runner / time_step / ce_step run and time it
  ce.py          ce_vs_hf_small, ce_vs_hf_medium
  mfu.py         mfu_medium, gpu_mfu_1b
  dft.py         dft_over_ce, bank_fold_compile
  sinkhorn.py    ott_vs_pot_4096, ott_vs_pot_curve
  decode.py      decode_vs_hf, top_p_vs_sort
  data.py        data_pipeline
  evaluation.py  table_bootstrap

Imported by scripts/bench.py, whose directory puts this package on sys.path; dft_jax and
experiments come installed (pip install -e .).
"""

from benchmarks.ce import ce_vs_hf_medium, ce_vs_hf_small
from benchmarks.common import Options
from benchmarks.data import data_pipeline
from benchmarks.decode import decode_vs_hf, top_p_vs_sort
from benchmarks.dft import bank_fold_compile, dft_over_ce
from benchmarks.evaluation import table_bootstrap
from benchmarks.mfu import gpu_mfu_1b, mfu_medium
from benchmarks.sinkhorn import ott_vs_pot_4096, ott_vs_pot_curve

PARTS = {"ce_vs_hf_small": ce_vs_hf_small, "ce_vs_hf_medium": ce_vs_hf_medium,
         "mfu_medium": mfu_medium, "dft_over_ce": dft_over_ce,
         "ott_vs_pot_4096": ott_vs_pot_4096, "ott_vs_pot_curve": ott_vs_pot_curve,
         "decode_vs_hf": decode_vs_hf, "data_pipeline": data_pipeline, "gpu_mfu_1b": gpu_mfu_1b,
         "top_p_vs_sort": top_p_vs_sort, "bank_fold_compile": bank_fold_compile,
         "table_bootstrap": table_bootstrap}

__all__ = ["Options", "PARTS"]
