"""The grain pipeline and TFDS text datasets: exact resume, packing, sharding, bad input."""

import collections
import json

import numpy as np
import pytest
import tokenizers

from dft_jax.data import pipeline, text_dataset
from dft_jax.data import tokenizer as tokenizer_lib
from dft_jax.data.pipeline import PipelineConfig


def _word_tokenizer(words):
  vocab = {"[UNK]": 0, "<|eos|>": 1, **{w: i + 2 for i, w in enumerate(sorted(set(words)))}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  return tokenizer_lib.Tokenizer(tok)


def _corpus(n=40, seed=0):
  """Documents of varied length; document i starts with its own marker word `d{i}`."""
  rng = np.random.RandomState(seed)
  docs = [" ".join([f"d{i}"] + [f"w{rng.randint(30)}" for _ in range(rng.randint(1, 40))])
          for i in range(n)]
  return docs, _word_tokenizer(" ".join(docs).split())


def _take(ds_or_it, n):
  it = iter(ds_or_it)
  return [next(it) for _ in range(n)]


def _same(a, b):
  return all(np.array_equal(a[k], b[k]) for k in pipeline.FIELDS)


def test_resume_from_saved_state_yields_the_same_batches():
  docs, tok = _corpus()
  cfg = PipelineConfig(seq_len=16, batch_size=4, seed=3)
  straight = _take(pipeline.make_dataset(docs, tok, cfg), 30)
  it = iter(pipeline.make_dataset(docs, tok, cfg))
  for _ in range(11):
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
  resumed = iter(pipeline.make_dataset(docs, tok, cfg))
  resumed.set_state(state)
  for expected in straight[11:]:
    assert _same(next(resumed), expected)


def test_same_seed_same_batches_other_seed_other_order():
  docs, tok = _corpus()
  make = lambda seed: _take(pipeline.make_dataset(
      docs, tok, PipelineConfig(seq_len=16, batch_size=4, seed=seed)), 8)
  a, b, c = make(0), make(0), make(1)
  assert all(_same(x, y) for x, y in zip(a, b))
  assert not all(_same(x, y) for x, y in zip(a, c))


def test_epochs_are_reshuffled():
  docs, tok = _corpus(n=12)
  rows = [b for b in pipeline.make_dataset(docs, tok, PipelineConfig(
      seq_len=8, batch_size=1, num_epochs=2))]
  markers = [tok.decode(r["tokens"][0]).split() for r in rows]
  order = [w for m in markers for w in m if w.startswith("d")]
  assert sorted(order[:12]) == sorted(order[12:]) and order[:12] != order[12:]


def _pieces(rows):
  for row in rows:
    for seg in np.unique(row["segment_ids"]):
      if seg == 0:
        continue
      idx = np.flatnonzero(row["segment_ids"] == seg)
      assert (np.diff(idx) == 1).all()
      yield row["tokens"][idx], row["positions"][idx], row["loss_mask"][idx]


@pytest.mark.parametrize("seq_len", [8, 32])
def test_packing_keeps_every_token_exactly_once_per_epoch(seq_len):
  docs, tok = _corpus()
  docs.append(" ".join(["d999"] + ["w1"] * 200))  # one document far longer than a row
  tok = _word_tokenizer(" ".join(docs).split())
  encoded = {ids[0]: ids + [1] for ids in (tok.encode(d) for d in docs)}
  rows = [{k: v[0] for k, v in b.items()} for b in pipeline.make_dataset(
      docs, tok, PipelineConfig(seq_len=seq_len, batch_size=1, num_epochs=1))]
  seen, starts = collections.Counter(), []
  for tokens, positions, loss_mask in _pieces(rows):
    seen.update(tokens.tolist())
    np.testing.assert_array_equal(positions, np.arange(len(tokens)))  # restart in every row
    assert loss_mask[0] == 0 and (loss_mask[1:] == 1).all()
    # every piece is a contiguous run of one document (document i's marker starts it)
    assert any(_contains(d, tokens) for d in encoded.values())
    if tokens[0] in encoded:
      starts.append(int(tokens[0]))
  assert seen == collections.Counter(t for d in encoded.values() for t in d)
  assert sorted(starts) == sorted(encoded)


def _contains(doc, piece):
  n = len(piece)
  return any(doc[i:i + n] == piece.tolist() for i in range(len(doc) - n + 1))


def test_two_processes_keep_their_rows_of_the_one_process_stream():
  """shard_by="rows": the processes' rows, stacked, are the single process's batches."""
  docs, tok = _corpus(n=41)
  cfg = PipelineConfig(seq_len=16, batch_size=4, num_epochs=1)
  one = list(pipeline.make_dataset(docs, tok, cfg, process_index=0, process_count=1))
  two = [list(pipeline.make_dataset(docs, tok, cfg, process_index=i, process_count=2))
         for i in (0, 1)]
  assert len(one) == len(two[0]) == len(two[1]) > 3
  for whole, first, second in zip(one, *two):
    for key in pipeline.FIELDS:
      assert first[key].shape[0] == 2
      np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), whole[key])


def test_two_processes_see_disjoint_halves_that_cover_everything():
  """shard_by="documents": each process reads its own half of the documents."""
  docs, tok = _corpus(n=41)
  cfg = PipelineConfig(seq_len=16, batch_size=2, num_epochs=1, shard_by="documents")
  seen = []
  for index in (0, 1):
    rows = list(pipeline.make_dataset(docs, tok, cfg, process_index=index, process_count=2))
    assert rows[0]["tokens"].shape == (1, 16)  # each process yields its share of the batch
    words = {w for b in rows for w in tok.decode(b["tokens"][0]).split()}
    seen.append({w for w in words if w.startswith("d")})
  assert not seen[0] & seen[1]
  assert len(seen[0]) in (20, 21) and len(seen[0]) + len(seen[1]) >= 40  # last rows may drop


def test_bad_pipeline_input_is_named():
  docs, tok = _corpus()
  with pytest.raises(tokenizer_lib.TokenizerError, match="vocabulary has only 10"):
    pipeline.make_dataset(docs, tok, PipelineConfig(seq_len=8, batch_size=2), model_vocab_size=10)
  with pytest.raises(ValueError, match="batch_size=3 is not divisible by the 2 processes"):
    pipeline.make_dataset(docs, tok, PipelineConfig(seq_len=8, batch_size=3), process_index=0,
                          process_count=2)
  with pytest.raises(ValueError, match="0 document"):
    pipeline.make_dataset([], tok, PipelineConfig(seq_len=8, batch_size=2))
  with pytest.raises(ValueError, match="shard_by must be 'rows' or 'documents', got 'hosts'"):
    pipeline.make_dataset(docs, tok, PipelineConfig(seq_len=8, batch_size=2, shard_by="hosts"))


# --- TFDS text datasets ---------------------------------------------------------------------


def test_text_directory_round_trip_through_tfds_and_the_pipeline(tmp_path):
  docs, tok = _corpus(n=30)
  text_dir = tmp_path / "texts"
  text_dir.mkdir()
  for i, d in enumerate(docs):
    (text_dir / f"doc{i:03d}.txt").write_text(d)
  (text_dir / "empty.txt").write_text("  \n")
  (text_dir / "latin1.txt").write_bytes("d777 caf\xe9 w1".encode("latin-1"))
  report = text_dataset.build(str(text_dir), str(tmp_path / "tfds"))
  assert report.documents == 31 and report.empty_skipped == 1
  assert report.replaced_characters == 1 and report.files_with_replacements == ["latin1.txt"]

  splits = {s: text_dataset.source(str(tmp_path / "tfds"), s) for s in text_dataset.SPLITS}
  assert sum(len(s) for s in splits.values()) == 31 and min(len(s) for s in splits.values()) >= 1
  texts = {text_dataset.TextField(s, "text")[i] for s in splits.values() for i in range(len(s))}
  assert texts == set(docs) | {"d777 caf\ufffd w1"}

  batch = next(iter(pipeline.make_dataset(splits["train"], tok, PipelineConfig(8, 2))))
  assert batch["tokens"].shape == (2, 8)
  with pytest.raises(text_dataset.DataError, match="no field 'body'"):
    text_dataset.TextField(splits["train"], "body")[0]


def test_text_directory_bad_input(tmp_path):
  with pytest.raises(text_dataset.DataError, match="text directory not found"):
    text_dataset.build(str(tmp_path / "missing"), str(tmp_path / "out"))
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "a.txt").write_text("")
  with pytest.raises(text_dataset.DataError, match="all 1 file"):
    text_dataset.build(str(tmp_path / "empty"), str(tmp_path / "out"))
  with pytest.raises(text_dataset.DataError, match="no prepared text dataset"):
    text_dataset.source(str(tmp_path / "nothing"), "train")


def test_one_document_per_line(tmp_path):
  (tmp_path / "in").mkdir()
  (tmp_path / "in" / "lines.txt").write_text("first doc\n\nsecond doc\nthird doc\n")
  report = text_dataset.build(str(tmp_path / "in"), str(tmp_path / "out"), unit="line")
  assert report.documents == 3 and report.empty_skipped == 1
