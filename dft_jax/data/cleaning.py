"""Text cleaning for the embedded corpora: decoding, whitespace normalization, a MediaWiki
markup stripper, deduplication, deterministic train / validation / test splitting and
paragraph chunking.

Pure functions of their inputs (no files, no network), so the same raw text always gives the
same documents and the same splits; `dft_jax.data.prepare` applies them to each domain's
source files.
"""

from __future__ import annotations

import hashlib
import html
import re
from typing import Iterable

HELD_OUT = 0.1  # of the documents in validation, and as many in test; the rest is train


def decode(raw: bytes) -> tuple[str, int]:
  """UTF-8 with undecodable bytes replaced; returns (text, number of replacements made)."""
  text = raw.decode("utf-8", errors="replace")
  return text, text.count("\ufffd") - raw.count("\ufffd".encode())


def normalize(text: str, keep_lines: bool = False) -> str:
  """Collapse whitespace; paragraphs (blank-line separated) joined by "\\n\\n".

  Lines inside a paragraph are joined by a space (hard-wrapped prose), or kept with
  `keep_lines` (verse, attributions).
  """
  paragraphs = []
  for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\t", " ")):
    lines = [re.sub(r"[ \u00a0]+", " ", line).strip() for line in block.split("\n")]
    lines = [line for line in lines if line]
    if lines:
      paragraphs.append(("\n" if keep_lines else " ").join(lines))
  return "\n\n".join(paragraphs)


def reflow(text: str) -> str:
  """Hard-wrapped prose with indented verse -> "\n\n"-separated paragraphs for `normalize`.

  Prose lines are joined by spaces; a run of indented lines is verse and keeps its lines; an
  indented line followed by an unindented one starts a prose paragraph.
  """
  lines, paras = text.expandtabs().split("\n"), [None]
  for i, line in enumerate(lines):
    if not line.strip():
      paras.append(None)
      continue
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    indented = line[0] == " "
    kind = "verse" if indented and (not nxt.strip() or nxt[0] == " ") else "prose"
    if paras[-1] is None or paras[-1][0] != kind or (kind == "prose" and indented):
      paras.append((kind, []))
    paras[-1][1].append(line.strip())
  return "\n\n".join(("\n" if p[0] == "verse" else " ").join(p[1]) for p in paras if p)


def clean_wiki(text: str) -> str:
  """MediaWiki markup -> plain paragraphs (one per source line)."""
  text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
  text = re.sub(r"<ref[^>]*/>", "", text)
  text = re.sub(r"<(ref|math|gallery|timeline|imagemap|score|syntaxhighlight|source|pre)\b[^>]*>"
                r".*?</\1\s*>", "", text, flags=re.S | re.I)
  text = _innermost(r"\{\{[^{}]*\}\}", "", text)  # nested templates
  text = _innermost(r"\{\|(?:(?!\{\|)[\s\S])*?\|\}", "", text)  # tables, nested
  text = re.sub(r"<[^<>]+>", "", text)  # other tags: keep their content
  text = re.sub(r"\[(?:https?:|ftp:)?//[^\s\]]+\s+([^\]]*)\]", r"\1", text)
  text = re.sub(r"\[(?:https?:|ftp:)?//[^\s\]]+\]", "", text)
  text = _drop_file_links(text)
  text = _innermost(r"\[\[([^\[\]]*)\]\]", _wikilink, text)
  text = re.sub(r"'{2,}", "", text)
  text = re.sub(r"(?m)^\s*=+.*?=+\s*$", "", text)  # headings
  text = re.sub(r"__[A-Z]+__", "", text)
  text = html.unescape(text)
  lines = [re.sub(r"^[*#:;]+\s*", "", line.strip()) for line in text.split("\n")]
  lines = [line for line in lines if line and line[0] not in "|!{}"]
  return normalize("\n\n".join(lines))


def _innermost(pattern: str, repl, text: str) -> str:
  """Apply `re.sub` until nothing changes, so nested constructs go innermost first."""
  while True:
    new = re.sub(pattern, repl, text)
    if new == text:
      return text
    text = new


def _drop_file_links(text: str) -> str:
  """Remove [[File:...]], [[Image:...]], [[Category:...]] up to their balanced closing `]]`.

  Their captions may hold links and stray single brackets, so a regex cannot find the end.
  """
  out, pos = [], 0
  for m in re.finditer(r"\[\[\s*(?:file|image|category|media)\s*:", text, flags=re.I):
    if m.start() < pos:
      continue  # inside one already dropped
    out.append(text[pos:m.start()])
    depth, single, i = 0, 0, m.start()  # single: open "[x" (in "[x]]]" its "]" comes first)
    while i < len(text) and (depth or i == m.start()):
      pair = text[i:i + 2]
      if text[i] == "]" and single:
        single, pair = single - 1, "]"
      elif pair in ("[[", "]]"):
        depth += 1 if pair == "[[" else -1
      else:
        single += text[i] == "["
        pair = text[i]
      i += len(pair)
    if depth:  # never closed: drop only the rest of its line
      i = text.find("\n", m.start()) % (len(text) + 1)
    pos = i
  return "".join(out) + text[pos:]


def _wikilink(m: re.Match) -> str:
  """[[target|label]] -> its label (else its target); file, category and interlanguage -> ""."""
  target, _, label = m.group(1).partition("|")
  prefix = target.split(":", 1)[0].strip().lower() if ":" in target else ""
  interlanguage = re.fullmatch(r"[a-z]{2,3}(-[a-z]+)?", prefix)
  if prefix in ("file", "image", "category", "media") or interlanguage:
    return ""  # files, categories, interlanguage links
  return (label.rsplit("|", 1)[-1] if label else target).strip()


def dedup_filter(docs: Iterable[str], min_chars: int) -> list[str]:
  """Drop documents shorter than `min_chars` and exact duplicates (first one kept)."""
  seen, out = set(), []
  for doc in docs:
    key = hashlib.sha1(doc.encode()).digest()
    if len(doc) >= min_chars and key not in seen:
      seen.add(key)
      out.append(doc)
  return out


def split_documents(docs: list[str], held_out: float = HELD_OUT) -> dict[str, list[str]]:
  """`held_out` of the documents in validation, as many in test, the rest in train (80/10/10
  by default), by sha1 of each text: deterministic, disjoint, >= 1 in each split."""
  if len(docs) < 3:
    raise ValueError(f"need at least 3 documents to split, got {len(docs)}")
  if not 0 < held_out < 0.5:
    raise ValueError(f"held_out must be in (0, 0.5), got {held_out}")
  ordered = sorted(docs, key=lambda d: hashlib.sha1(d.encode()).hexdigest())
  n_val = n_test = max(1, min(round(len(docs) * held_out), (len(docs) - 1) // 2))
  return {"test": ordered[:n_test], "validation": ordered[n_test:n_test + n_val],
          "train": ordered[n_test + n_val:]}


def chunk_paragraphs(text: str, lo: int = 1500, hi: int = 3000) -> list[str]:
  """Consecutive paragraphs grouped into documents of roughly `lo`..`hi` characters."""
  docs, cur = [], []
  for p in text.split("\n\n"):
    if cur and len("\n\n".join(cur + [p])) > hi:
      docs.append(cur)
      cur = []
    cur.append(p)
    if len("\n\n".join(cur)) >= lo:
      docs.append(cur)
      cur = []
  if cur:
    if docs and len("\n\n".join(cur)) < lo // 2:
      docs[-1] += cur
    else:
      docs.append(cur)
  return ["\n\n".join(d) for d in docs]
