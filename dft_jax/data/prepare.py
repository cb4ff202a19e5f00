"""Preparing the embedded corpora: fetch each domain's source, clean it, write its splits.

  python -m dft_jax.data.prepare [--domains a,b] [--data_dir D] [--force]

Sources come from registry packages only: a file inside the gensim wheel (fetched with
`pip download`), files of Debian packages (installed ones, else `apt-get download`, after an
`apt-get update` when that fails and we are root), or Debian's licence texts already on the
machine. Each domain is cleaned (`dft_jax.data.cleaning`), deduplicated and split by a hash of
each document's text, so the same inputs always give byte-identical files, written atomically
where `dft_jax.data.corpora` reads them. This is the only module of the package that runs a
system command, and it runs only when called: training and evaluation read prepared files.

A domain that cannot be obtained is written as `status: "unavailable"` with its reason, never
silently dropped; the command still exits 0, so the domains that could be made are usable.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
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

from absl import app, flags

from dft_jax.data import cleaning, corpora, files

_MIN_CHARS = {"literary": 80, "aphorisms": 80}  # shortest document kept; others: 200
# Share of the documents in validation (and as many in test) where 10% is too few: the paper
# table's intervals resample documents and want >= 40 of them in each evaluation split, and
# the encyclopedia has 106 articles (40 / 40 / 26; its train split still gives a 1,024-window
# bank many times over); the wisdom books' 247 short chapters need a third of them in each to
# give 2 x 256 non-overlapping prompt cuts (84 / 84 / 79).
_HELD_OUT = {"encyclopedia": 0.38, "wisdom": 0.34}
_GENSIM, _LEE, _ENWIKI = corpora.GENSIM, corpora.LEE, corpora.ENWIKI
_LICENSES = corpora.COMMON_LICENSES


# ----------------------------------------------------------------------------- fetching

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
  """The bytes of one file inside a wheel (zip) or an sdist (tar)."""
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
  """A system command, its output captured (for the error line when it fails)."""
  return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _last_line(s: str) -> str:
  """The last non-blank line of a command's output: the one that says what went wrong."""
  lines = [line for line in (s or "").strip().splitlines() if line.strip()]
  return lines[-1].strip() if lines else "no output"


# ----------------------------------------------------------------------------- readers
# Each takes the download cache and returns (documents, replaced characters, exact source).

def read_news(cache: str) -> tuple[list[str], int, str]:
  """ABC news articles, one per line (the Lee corpus shipped with gensim's tests)."""
  text, bad = cleaning.decode(_member(_pypi_archive(os.path.join(cache, "pypi")), _LEE))
  return [cleaning.normalize(line) for line in text.split("\n")], bad, f"PyPI {_GENSIM}: {_LEE}"


def read_encyclopedia(cache: str) -> tuple[list[str], int, str]:
  """Main-namespace, non-redirect articles of a shortened English Wikipedia dump."""
  archive = _pypi_archive(os.path.join(cache, "pypi"))
  text, bad = cleaning.decode(bz2.decompress(_member(archive, _ENWIKI)))
  docs = []
  for _, el in ET.iterparse(io.BytesIO(text.encode())):
    if el.tag.rsplit("}", 1)[-1] != "page":
      continue
    field = {c.tag.rsplit("}", 1)[-1]: c for c in el.iter()}
    ns = field["ns"].text if "ns" in field else "0"
    body = field["text"].text if "text" in field else None
    redirect = "redirect" in field or (body or "").lstrip().lower().startswith("#redirect")
    if ns == "0" and body and not redirect:
      docs.append(cleaning.clean_wiki(body))
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
    text, n = cleaning.decode(raw)
    bad += n
    docs += cleaning.chunk_paragraphs(cleaning.normalize(text))
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
      text, n = cleaning.decode(data[start:start + _b64(length)])
      bad += n
      docs.append(cleaning.normalize(cleaning.reflow(text), keep_lines=True))
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
      text, n = cleaning.decode(f.read())
    bad += n
    docs += [cleaning.normalize(cleaning.reflow(e), keep_lines=True)
             for e in re.split(r"(?m)^%[ \t]*$", text)]
  return docs, bad, f"{source}: usr/share/games/fortunes/{{{','.join(names)}}}"


_KJV = "/usr/share/bibledit/sources/kjv.xml"
_OSIS = "{http://www.bibletechnologies.net/2003/OSIS/namespace}"


def _osis_text(el) -> str:
  """The words of an OSIS element, without its notes and titles (their tails are kept)."""
  parts = [el.text or ""]
  for child in el:
    if child.tag not in (_OSIS + "note", _OSIS + "title"):
      parts.append(_osis_text(child))
    parts.append(child.tail or "")
  return "".join(parts)


def _read_kjv(books: tuple[str, ...], cache: str) -> tuple[list[str], int, str]:
  """`books` (OSIS ids) of the King James Bible: one chapter per document, without the
  translators' notes and the chapter titles."""
  (path,), source = _debian_files("bibledit-data", [_KJV], os.path.join(cache, "deb"))
  with open(path, "rb") as f:
    text, bad = cleaning.decode(f.read())
  docs = []
  for book in ET.fromstring(text).iter(_OSIS + "div"):
    if book.get("type") == "book" and book.get("osisID") in books:
      docs += [cleaning.normalize(re.sub(r"\s+", " ", _osis_text(chapter)))
               for chapter in book.iter(_OSIS + "chapter")]
  return docs, bad, f"{source}: {_KJV.lstrip('/')} ({', '.join(books)})"


def read_narrative(cache: str) -> tuple[list[str], int, str]:
  """The narrative books of the King James Bible (Genesis-Esther, the Gospels, Acts)."""
  return _read_kjv(corpora.NARRATIVE_BOOKS, cache)


def read_wisdom(cache: str) -> tuple[list[str], int, str]:
  """The poetry and wisdom books of the King James Bible (Job, Psalms, Proverbs,
  Ecclesiastes, the Song of Solomon, Lamentations)."""
  return _read_kjv(corpora.WISDOM_BOOKS, cache)


_READERS: dict[str, Callable[[str], tuple[list[str], int, str]]] = {
    "news": read_news, "encyclopedia": read_encyclopedia, "legal": read_legal,
    "literary": read_literary, "aphorisms": read_aphorisms, "narrative": read_narrative,
    "wisdom": read_wisdom}


# ----------------------------------------------------------------------------- preparing

def _prepare_one(domain: str, root: str) -> dict:
  """Read, clean and split one domain and write its files; its manifest (also on failure)."""
  out = corpora.split_dir(domain, root)
  os.makedirs(out, exist_ok=True)
  license_ = corpora.LICENSES[domain]
  try:
    raw, bad, source = _READERS[domain](os.path.join(root, "cache"))
    docs = cleaning.dedup_filter(raw, _MIN_CHARS.get(domain, 200))
    splits = cleaning.split_documents(docs, _held_out(domain))
  except Exception as e:  # noqa: BLE001 -- any failure makes the domain unavailable, with why
    info = {"name": domain, "source": corpora.SOURCES[domain], "license": license_,
            "status": "unavailable", "documents": 0, "bytes": 0,
            "error": _last_line(f"{type(e).__name__}: {e}")}
    files.write_text(os.path.join(out, "manifest.json"), json.dumps(info, indent=2) + "\n")
    return info
  sizes = {}
  for name in corpora.SPLITS:
    files.write_text(os.path.join(out, f"{name}.jsonl"),
                     "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n"
                             for d in splits[name]))
    sizes[name] = {"documents": len(splits[name]),
                   "bytes": sum(len(d.encode()) for d in splits[name])}
  info = {"name": domain, "source": source, "license": license_,
          "bytes": sum(s["bytes"] for s in sizes.values()), "documents": len(docs),
          "splits": sizes, "held_out": _held_out(domain), "replaced_characters": bad,
          "status": "ready"}
  files.write_text(os.path.join(out, "manifest.json"), json.dumps(info, indent=2) + "\n")
  return info


def _held_out(domain: str) -> float:
  return _HELD_OUT.get(domain, cleaning.HELD_OUT)


def prepare(domains: Iterable[str] | None = None, data_dir: str | None = None, *,
            force: bool = False) -> dict[str, dict]:
  """Prepare each domain (all by default) unless already ready with today's split (a domain
  prepared with another held-out share is prepared again); returns manifests by domain."""
  domains = list(corpora.DOMAINS if domains is None else domains)
  for d in domains:
    corpora.check(d, corpora.DOMAINS, "domain")
  root, results = corpora.data_root(data_dir), {}
  for d in domains:
    info = corpora.manifest(d, root)
    recorded = info.get("held_out", cleaning.HELD_OUT)  # unrecorded: the 80/10/10 of before
    resplit = info.get("status") == "ready" and recorded != _held_out(d)
    cached = info.get("status") == "ready" and not force and not resplit
    if resplit:
      print(f"corpora: {d}: prepared with {recorded:g} of the documents held out, now "
            f"{_held_out(d):g}: preparing it again", file=sys.stderr)
    if not cached:
      info = _prepare_one(d, root)
    results[d] = info
    detail = (f"{info['documents']} documents, {info['bytes']:,} bytes"
              + (" (already prepared)" if cached else "")
              if info["status"] == "ready" else info.get("error", ""))
    print(f"corpora: {d}: {info['status']}: {detail}", file=sys.stderr, flush=True)
  return results


# ----------------------------------------------------------------------------- CLI

def define_flags() -> None:
  """The command line's flags (not defined on import: scripts define their own --domains)."""
  flags.DEFINE_list("domains", None,
                    f"Domains to use (default all): {','.join(corpora.DOMAINS)}.")
  flags.DEFINE_string("data_dir", None, "Data dir (default $DFT_JAX_DATA or ~/.cache/dft_jax).")
  flags.DEFINE_bool("force", False, "Prepare again even if already prepared.")
  flags.DEFINE_bool("list", False, "Print each domain's manifest instead of preparing.")
  flags.DEFINE_bool("json", False, "With --list: print a JSON list as the last line.")


def list_manifests(domains, data_dir, as_json: bool) -> None:
  """One row per domain's manifest: name, status, documents, bytes, source (or error)."""
  rows = []
  for d in domains:
    info = corpora.manifest(d, data_dir)
    row = {k: info.get(k) for k in ("name", "documents", "bytes", "license", "source", "status")}
    if "error" in info:
      row["error"] = info["error"]
    rows.append(row)
  if as_json:
    print(json.dumps(rows))
    return
  for r in rows:
    print(f"{r['name']:<13} {r['status']:<11} {r['documents']:>6} docs {r['bytes']:>10,} bytes"
          f"  {r['source'] or r.get('error', '')}")


def main(argv: list[str]) -> None:
  """Prepare --domains (default all) under --data_dir; --list: show their manifests."""
  if len(argv) != 1:
    raise app.UsageError("usage: python -m dft_jax.data.prepare [--domains a,b] "
                         "[--data_dir D] [--force] [--list [--json]]")
  f = flags.FLAGS
  if f.list:
    list_manifests(f.domains or list(corpora.DOMAINS), f.data_dir, f.json)
    return
  prepare(f.domains or list(corpora.DOMAINS), f.data_dir, force=f.force)


if __name__ == "__main__":
  define_flags()
  app.run(main)
