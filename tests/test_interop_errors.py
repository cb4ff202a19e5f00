"""Bad checkpoints and configs: one clear error naming the field or tensor."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.models import (CheckpointError, ConfigError, Decoder, ModelConfig, from_pretrained,
                            native, save_pretrained)

import train_utils as tu


def _copy(src, dst):
  shutil.copytree(src, dst, dirs_exist_ok=True)
  return dst


def _edit_config(path, **changes):
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  config.update(changes)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)


def _edit_tensors(path, fn):
  file = os.path.join(path, "model.safetensors")
  tensors = load_file(file)
  fn(tensors)
  save_file(tensors, file, metadata={"format": "pt"})


def test_unsupported_model_type(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  _edit_config(path, model_type="gpt2")
  with pytest.raises(ConfigError, match="unsupported model_type 'gpt2'"):
    from_pretrained(path)


def test_unsupported_rope_scaling(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  _edit_config(path, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4})
  with pytest.raises(ConfigError, match="unsupported rope scaling type 'yarn'"):
    from_pretrained(path)


def test_missing_config_field(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  with open(os.path.join(path, "config.json")) as f:
    config = json.load(f)
  del config["hidden_size"]
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  with pytest.raises(ConfigError, match="missing required field 'hidden_size'"):
    from_pretrained(path)


def test_missing_tensor_is_named(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("qwen3")[0], tmp_path)
  _edit_tensors(path, lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"))
  with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.self_attn\.k_norm"):
    from_pretrained(path)


def test_shape_mismatch_is_named(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  _edit_config(path, intermediate_size=96)
  with pytest.raises(CheckpointError,
                     match=r"tensor 'model\.layers\.0\.mlp\.gate_proj\.weight' has shape "
                           r"\(80, 48\), config\.json implies \(96, 48\)"):
    from_pretrained(path)


def test_unexpected_tensor_is_named(hf_checkpoint, tmp_path):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  _edit_tensors(path, lambda t: t.update({"model.layers.0.extra.weight": np.zeros(3, np.float32)}))
  with pytest.raises(CheckpointError, match=r"unexpected tensor 'model\.layers\.0\.extra\.weight'"):
    from_pretrained(path)


def test_pickle_only_checkpoint_is_refused(tmp_path, hf_checkpoint):
  shutil.copy(os.path.join(hf_checkpoint("llama2")[0], "config.json"), tmp_path)
  (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
  with pytest.raises(CheckpointError, match="only pickle weights"):
    from_pretrained(tmp_path)


def _truncate(file, size):
  with open(file, "r+b") as f:
    f.truncate(size)


@pytest.mark.parametrize("size", ["half", 10])
def test_truncated_safetensors_is_named(hf_checkpoint, tmp_path, size):
  path = _copy(hf_checkpoint("llama2")[0], tmp_path)
  file = os.path.join(path, "model.safetensors")
  _truncate(file, os.path.getsize(file) // 2 if size == "half" else size)
  with pytest.raises(CheckpointError, match=rf"^{re.escape(file)} is not a readable safetensors "
                                            r"file \(truncated or corrupt: .+\); re-download"):
    from_pretrained(path)


def test_truncated_or_misindexed_shard_is_named(hf_checkpoint, tmp_path):
  model = from_pretrained(hf_checkpoint("llama2")[0])
  save_pretrained(model, tmp_path / "a", max_shard_bytes=20_000)
  with open(tmp_path / "a" / "model.safetensors.index.json") as f:
    index = json.load(f)
  shards = sorted(set(index["weight_map"].values()))
  assert len(shards) > 2
  _copy(tmp_path / "a", tmp_path / "b")
  _truncate(tmp_path / "a" / shards[1], 100)
  with pytest.raises(CheckpointError, match=rf"{shards[1]} is not a readable safetensors file"):
    from_pretrained(tmp_path / "a")
  index["weight_map"]["model.norm.weight"] = shards[0]
  with open(tmp_path / "b" / "model.safetensors.index.json", "w") as f:
    json.dump(index, f)
  with pytest.raises(CheckpointError, match=rf"tensor 'model\.norm\.weight' cannot be read from "
                                            rf".*{shards[0]}: File does not contain tensor"):
    from_pretrained(tmp_path / "b")


def test_train_cli_init_from_a_truncated_hf_checkpoint_is_one_line(tmp_path):
  text_dir, tok = tu.make_corpus(str(tmp_path))
  cfg = ModelConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=2,
                    num_heads=4, num_kv_heads=2, head_dim=8)
  save_pretrained(Decoder(cfg, rngs=nnx.Rngs(0)), tmp_path / "hf")
  file = tmp_path / "hf" / "model.safetensors"
  _truncate(file, os.path.getsize(file) // 2)
  done = tu.run(tu.command(tmp_path / "w", text_dir, tok, str(tmp_path / "data"),
                           f"--config.init_from={tmp_path / 'hf'}"))
  assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
  assert done.stderr.strip().splitlines()[-1] == (
      f"train: error: {file} is not a readable safetensors file (truncated or corrupt: "
      "incomplete metadata, file not fully covered); re-download or re-export it")


def test_train_cli_mistyped_override_is_one_clean_line(tmp_path):
  done = tu.run([sys.executable, "-m", "dft_jax.train", "--config",
                 os.path.join(tu.REPO, "experiments", "dft.py"), "--config.loss.lamda=0.1",
                 f"--workdir={tmp_path / 'w'}"])
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      "train: error: bad --config override --config.loss.lamda: no field 'lamda' "
      '(did you mean "lam"?)']
  assert not os.path.exists(tmp_path / "w")


def test_missing_directory():
  with pytest.raises(FileNotFoundError, match="not found: /no/such/dir"):
    from_pretrained("/no/such/dir")


def test_native_checkpoint_from_another_model_is_refused(hf_checkpoint, tmp_path):
  native.save(from_pretrained(hf_checkpoint("llama2")[0]), tmp_path / "a")
  config = json.loads((tmp_path / "a" / native.CONFIG_FILE).read_text())
  config["intermediate_size"] = 96
  (tmp_path / "a" / native.CONFIG_FILE).write_text(json.dumps(config))
  with pytest.raises(CheckpointError, match=r"parameter 'layers/0/mlp/down_FxD' in .* has shape "
                                            r"\(80, 48\), model_config.json implies \(96, 48\)"):
    native.load(tmp_path / "a")


def test_tokenizer_larger_than_model_vocabulary(tmp_path):
  text = ["the quick brown fox jumps over the lazy dog. " * 20, "Sphinx of black quartz!"]
  tok = tokenizer_lib.train_byte_level_bpe(text, vocab_size=300)
  tok.check_fits(tok.vocab_size)
  with pytest.raises(tokenizer_lib.TokenizerError, match=r"tokenizer has \d+ tokens but the "
                                                         r"model's vocabulary has only 97"):
    tok.check_fits(97)


def _word_tokenizer(size):
  import tokenizers
  vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, size)}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  return tokenizer_lib.Tokenizer(tok)


def _convert(*args):
  return subprocess.run([sys.executable, "-m", "dft_jax.convert", *args], capture_output=True,
                        text=True, timeout=300)


def test_convert_cli_round_trip_and_errors(hf_checkpoint, tmp_path):
  import hf_reference as ref
  import transformers
  src, hf_model = hf_checkpoint("qwen2")
  tok = _word_tokenizer(ref.COMMON["vocab_size"])
  hf_dir = _copy(src, tmp_path / "hf")
  tok.save(str(hf_dir / "tokenizer.json"))

  done = _convert("--from-hf", str(hf_dir), "--to", str(tmp_path / "native"))
  assert done.returncode == 0, done.stderr
  assert os.path.isfile(tmp_path / "native" / "tokenizer.json")
  done = _convert("--from", str(tmp_path / "native"), "--to-hf", str(tmp_path / "back"),
                  "--max-shard-mb", "1")
  assert done.returncode == 0, done.stderr

  ids = np.random.RandomState(0).randint(0, 97, size=(2, 12))
  back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
  np.testing.assert_array_equal(ref.logits(back, ids), ref.logits(hf_model, ids))
  assert tokenizer_lib.load(tmp_path / "back").fingerprint == tok.fingerprint
  np.testing.assert_array_equal(
      np.asarray(native.load(tmp_path / "native")(jnp.asarray(ids))),
      np.asarray(from_pretrained(tmp_path / "back")(jnp.asarray(ids))))

  bad = _convert("--from-hf", str(tmp_path / "nothing"), "--to", str(tmp_path / "x"))
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith("convert: error: HF checkpoint "
                                                        "directory not found")
  big = tokenizer_lib.train_byte_level_bpe(["many different words " * 50], vocab_size=400)
  big.save(str(hf_dir / "tokenizer.json"))
  bad = _convert("--from-hf", str(hf_dir), "--to", str(tmp_path / "y"))
  assert bad.returncode == 1 and "vocabulary has only 97" in bad.stderr
  assert not os.path.exists(tmp_path / "y" / native.CONFIG_FILE)
