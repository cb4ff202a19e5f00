r"""Converts between Hugging Face checkpoint directories and native dft_jax model directories.

  python -m dft_jax.convert --from-hf HF_DIR --to OUT_DIR      # HF -> dft_jax (orbax)
  python -m dft_jax.convert --from DFT_DIR --to-hf OUT_DIR     # dft_jax -> HF (safetensors)
  python -m dft_jax.convert --from WORKDIR --to-hf OUT_DIR     # a run's newest checkpoint -> HF
  python -m dft_jax.convert --from-gguf FILE --to-hf OUT_DIR   # llama.cpp GGUF -> HF (float32)

`tokenizer.json` travels with the weights, checked against the model's vocabulary.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.models import gguf_io, hf_io, native
from dft_jax.train import checkpoint

FLAGS = flags.FLAGS
flags.DEFINE_string("from-hf", None, "Hugging Face checkpoint directory to read.")
flags.DEFINE_string("to", None, "dft_jax model directory to write (with --from-hf).")
flags.DEFINE_string("from", None, "dft_jax model directory or training workdir to read "
                    "(with --to-hf).")
flags.DEFINE_string("to-hf", None, "Hugging Face directory to write (with --from or "
                    "--from-gguf).")
flags.DEFINE_string("from-gguf", None, "GGUF file to read (llama architecture; any "
                    "quantization the gguf package dequantizes).")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"],
                  "Storage dtype of the written weights (default: as read).")
flags.DEFINE_integer("max-shard-mb", 5 * 1024, "Largest safetensors shard written, in MiB.")


def _tokenizer_file(src: str, vocab_size: int) -> str | None:
  file = os.path.join(src, "tokenizer.json")
  if not os.path.isfile(file):
    return None
  tokenizer_lib.load(file).check_fits(vocab_size)
  return file


def hf_to_native(src: str, dst: str, dtype: str | None = None) -> None:
  model = hf_io.from_pretrained(src, param_dtype=dtype) if dtype else hf_io.from_pretrained(src)
  native.save(model, dst, tokenizer_file=_tokenizer_file(src, model.cfg.vocab_size))


def native_to_hf(src: str, dst: str, dtype: str | None = None,
                 max_shard_bytes: int = 5 * 1024**3) -> None:
  if checkpoint.init_kind(src) == "workdir":
    model, _ = checkpoint.load_model(src)
  else:
    model = native.load(src)
  hf_io.save_pretrained(model, dst, dtype=dtype, max_shard_bytes=max_shard_bytes,
                        tokenizer_file=_tokenizer_file(src, model.cfg.vocab_size))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  src_hf, src_native, src_gguf = (FLAGS[k].value for k in ("from-hf", "from", "from-gguf"))
  to_hf = FLAGS["to-hf"].value
  if sum(map(bool, (src_hf, src_native, src_gguf))) != 1 or bool(src_hf) != bool(FLAGS.to) \
      or bool(src_native or src_gguf) != bool(to_hf):
    raise app.UsageError("give --from-hf DIR --to DIR, --from DIR --to-hf DIR, or "
                         "--from-gguf FILE --to-hf DIR")
  start = time.time()
  try:
    if src_hf:
      hf_to_native(src_hf, FLAGS.to, FLAGS.dtype)
      out = FLAGS.to
    elif src_gguf:
      gguf_io.convert(src_gguf, to_hf)
      out = to_hf
    else:
      native_to_hf(src_native, to_hf, FLAGS.dtype, FLAGS["max-shard-mb"].value * 1024**2)
      out = to_hf
  except (FileNotFoundError, ValueError) as e:  # ConfigError, CheckpointError, TokenizerError
    print(f"convert: error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"convert: wrote {out} in {time.time() - start:.1f}s")


if __name__ == "__main__":
  app.run(main)
