"""TFDS datasets of local text: any directory becomes an `array_record` dataset read back with
`tfds.data_source` (random access, no TensorFlow needed), and catalog datasets by name.

  build(text_dir, data_dir)                 # one document per file (or per line: unit="line")
  source(data_dir, split)                   # -> random-access source of {"text": bytes}
  catalog_source("wikipedia/...", "train", text_field="text")
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Sequence

import tensorflow_datasets as tfds

NAME = "text_directory"
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
  """Unusable input data; the message names the path or field."""


@dataclasses.dataclass
class ReadReport:
  """What reading a directory found, so nothing is dropped silently."""
  files: int = 0
  documents: int = 0
  empty_skipped: int = 0
  replaced_characters: int = 0
  files_with_replacements: list[str] = dataclasses.field(default_factory=list)


def read_documents(text_dir: str, unit: str = "file",
                   suffixes: Sequence[str] = (".txt", ".md", ".text", "")
                   ) -> tuple[list[tuple[str, str]], ReadReport]:
  """(key, text) for every non-empty document under `text_dir`; undecodable bytes replaced."""
  if unit not in ("file", "line"):
    raise DataError(f"unit must be 'file' or 'line', got {unit!r}")
  if not os.path.isdir(text_dir):
    raise DataError(f"text directory not found: {text_dir}")
  report, docs = ReadReport(), []
  for root, _, files in sorted(os.walk(text_dir)):
    for name in sorted(files):
      if os.path.splitext(name)[1] not in suffixes or name.startswith("."):
        continue
      path = os.path.join(root, name)
      rel = os.path.relpath(path, text_dir)
      with open(path, "rb") as f:
        raw = f.read()
      text = raw.decode("utf-8", errors="replace")
      replaced = text.count("\ufffd") - raw.count("\ufffd".encode())
      if replaced:
        report.replaced_characters += replaced
        report.files_with_replacements.append(rel)
      report.files += 1
      pieces = [text] if unit == "file" else text.splitlines()
      for i, piece in enumerate(pieces):
        if not piece.strip():
          report.empty_skipped += 1
          continue
        docs.append((rel if unit == "file" else f"{rel}:{i}", piece.strip()))
  if report.files == 0:
    raise DataError(f"no text files in {text_dir} (looked for {', '.join(s or '(none)' for s in suffixes)})")
  if not docs:
    raise DataError(f"all {report.files} file(s) in {text_dir} are empty")
  report.documents = len(docs)
  return docs, report


def assign_splits(keys: Sequence[str], fractions: tuple[float, float, float]) -> dict[str, str]:
  """key -> split, deterministic: keys ordered by a stable hash, cut by the fractions; with three
  or more documents, validation and test get at least one each."""
  order = sorted(keys, key=lambda k: hashlib.sha1(k.encode()).hexdigest())
  n = len(order)
  n_val = max(round(fractions[1] * n), 1 if n >= 3 and fractions[1] > 0 else 0)
  n_test = max(round(fractions[2] * n), 1 if n >= 3 and fractions[2] > 0 else 0)
  n_train = n - n_val - n_test
  return {k: "train" if i < n_train else "validation" if i < n_train + n_val else "test"
          for i, k in enumerate(order)}


class TextDirectory(tfds.core.GeneratorBasedBuilder):
  """A directory of text files as a TFDS dataset with train / validation / test splits."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Documents from a local text directory."}

  def __init__(self, *, text_dir: str | None = None, unit: str = "file",
               fractions: tuple[float, float, float] = (0.9, 0.05, 0.05), **kwargs):
    self._text_dir, self._unit, self._fractions = text_dir, unit, tuple(fractions)
    self.report: ReadReport | None = None
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
        description="Documents read from a local text directory by dft_jax.")

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._text_dir is None:
      raise DataError("TextDirectory needs text_dir to be prepared")
    docs, self.report = read_documents(self._text_dir, self._unit)
    by_split = {s: [] for s in SPLITS}
    assignment = assign_splits([key for key, _ in docs], self._fractions)
    for key, text in docs:
      by_split[assignment[key]].append((key, text))
    return {s: self._generate_examples(d) for s, d in by_split.items() if d}

  def _generate_examples(self, docs):
    for key, text in docs:
      yield key, {"text": text}


def build(text_dir: str, data_dir: str, *, unit: str = "file",
          fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> ReadReport:
  """Prepares `text_dir` as an array_record TFDS dataset under `data_dir`; returns what it read."""
  tfds.disable_progress_bar()
  builder = TextDirectory(text_dir=text_dir, unit=unit, fractions=fractions, data_dir=data_dir,
                          file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(download_mode=tfds.download.GenerateMode.
                                                   REUSE_DATASET_IF_EXISTS))
  if builder.report is None:  # already prepared earlier: count what is there
    builder.report = ReadReport(documents=sum(s.num_examples
                                              for s in builder.info.splits.values()))
  return builder.report


def source(data_dir: str, split: str = "train"):
  """Random-access source of {"text": bytes} records of a dataset made by `build`."""
  try:
    return tfds.data_source(NAME, split=split, data_dir=data_dir)
  except (tfds.core.registered.DatasetNotFoundError, AssertionError, FileNotFoundError,
          ValueError) as e:
    raise DataError(f"no prepared text dataset (split {split!r}) in {data_dir}: "
                    f"{(str(e).splitlines() or [''])[0]}") from None


class TextField:
  """Maps a source of records to its text field, so any catalog dataset feeds the pipeline."""

  def __init__(self, records, field: str):
    self.records, self.field = records, field

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, i: int) -> str:
    record: Any = self.records[i]
    if self.field not in record:
      raise DataError(f"record has no field {self.field!r}; fields: {sorted(record)}")
    value = record[self.field]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def catalog_source(name: str, split: str = "train", *, text_field: str = "text",
                   data_dir: str | None = None) -> TextField:
  """A TFDS catalog dataset by name (prepared in array_record format) as a source of strings."""
  return TextField(tfds.data_source(name, split=split, data_dir=data_dir), text_field)
