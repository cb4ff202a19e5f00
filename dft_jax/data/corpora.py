"""The embedded corpora: small sets of real human prose by domain, read from prepared files.

Each domain is made once, by `python -m dft_jax.data.prepare`, from a file inside a PyPI wheel
or a Debian package (or one already on a Debian machine), cleaned, deduplicated and split by
document into train / validation / test, into

  <data_dir>/corpora/<domain>/{train,validation,test}.jsonl   one {"text": ...} per line
  <data_dir>/corpora/<domain>/manifest.json                   source, licence, sizes, status

This module only finds and reads those files: it never fetches, writes or runs anything, so
training and evaluation do not start package managers. A domain that is not prepared, or
whose preparation failed (`status: "unavailable"`, with its reason), is an error naming the
command that prepares it.

  python -m dft_jax.data.prepare --list [--json]    the manifests (that module's CLI)
"""

from __future__ import annotations

import json
import os
import shlex


DOMAINS = ("news", "encyclopedia", "legal", "literary", "aphorisms", "narrative", "wisdom")
SPLITS = ("train", "validation", "test")

# Where each domain comes from; a manifest's "source" before the domain is prepared (preparing
# records the exact package version).
GENSIM = "gensim==4.4.0"  # the PyPI package whose test data holds news and encyclopedia
LEE = "gensim/test/test_data/lee_background.cor"
ENWIKI = ("gensim/test/test_data/"
          "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
COMMON_LICENSES = "/usr/share/common-licenses"
# The King James Bible's narrative books (OSIS ids): prose that tells a story, in a register a
# small instruct model does not write in (the second target domain of the paper table).
NARRATIVE_BOOKS = ("Gen", "Exod", "Lev", "Num", "Deut", "Josh", "Judg", "Ruth", "1Sam", "2Sam",
                   "1Kgs", "2Kgs", "1Chr", "2Chr", "Ezra", "Neh", "Esth",
                   "Matt", "Mark", "Luke", "John", "Acts")
# Its poetry and wisdom books: verse in short, parallel clauses (the human sentence-length
# variance of the table's 48-token windows is about half the narrative books'), a rhythm SFT
# must learn.
WISDOM_BOOKS = ("Job", "Ps", "Prov", "Eccl", "Song", "Lam")
SOURCES = {
    "news": f"PyPI {GENSIM}: {LEE}", "encyclopedia": f"PyPI {GENSIM}: {ENWIKI}",
    "legal": f"Debian base-files: {COMMON_LICENSES}/*",
    "literary": "Debian dict-devil: usr/share/dictd/devil.dict.dz",
    "aphorisms": "Debian fortunes-min: usr/share/games/fortunes/{fortunes,literature,riddles}",
    "narrative": "Debian bibledit-data: usr/share/bibledit/sources/kjv.xml (narrative books)",
    "wisdom": "Debian bibledit-data: usr/share/bibledit/sources/kjv.xml (poetry and wisdom books)"}
LICENSES = {
    "news": "LGPL-2.1-only (gensim package, per its METADATA); the Lee corpus is ABC news text "
            "distributed with gensim's tests",
    "encyclopedia": "CC BY-SA 3.0 (Wikipedia text)",
    "legal": "verbatim licence texts (copying permitted, modification not)",
    "literary": "public domain (Ambrose Bierce, The Devil's Dictionary)",
    "aphorisms": "BSD-3-Clause (fortune-mod, per Debian fortunes-min copyright); quotations from "
                 "various authors",
    "narrative": "public domain (King James Version, 1769 text; Crown patent in the UK only)",
    "wisdom": "public domain (King James Version, 1769 text; Crown patent in the UK only)"}
PREPARE_COMMAND = "python -m dft_jax.data.prepare"


class CorpusError(ValueError, RuntimeError):
  """A domain that is not prepared, or could not be.

  A ValueError, so the command lines that report bad inputs in one line report this too, and a
  RuntimeError, the class callers caught before preparing moved out of `load_split`.
  """


def data_root(data_dir: str | None = None) -> str:
  """`data_dir`, else `$DFT_JAX_DATA`, else `~/.cache/dft_jax`."""
  return os.path.expanduser(data_dir or os.environ.get("DFT_JAX_DATA") or "~/.cache/dft_jax")


def split_dir(domain: str, data_dir: str | None = None) -> str:
  """The folder holding the domain's jsonl splits and manifest."""
  check(domain, DOMAINS, "domain")
  return os.path.join(data_root(data_dir), "corpora", domain)


def check(name: str, valid: tuple[str, ...], what: str) -> None:
  """ValueError naming the valid choices unless `name` is one of them."""
  if name not in valid:
    raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(valid)}")


def manifest(domain: str, data_dir: str | None = None) -> dict:
  """The domain's manifest; status "missing" (and no sizes) when it was never prepared."""
  path = os.path.join(split_dir(domain, data_dir), "manifest.json")
  if not os.path.exists(path):
    return {"name": domain, "source": SOURCES[domain], "license": LICENSES[domain],
            "status": "missing", "documents": 0, "bytes": 0}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def require(domains: list[str], data_dir: str | None = None) -> None:
  """CorpusError unless every domain is prepared: one line naming the command for all of them.

  Reading never prepares (that may download packages and run apt-get).
  """
  infos = [manifest(d, data_dir) for d in domains]
  infos = [info for info in infos if info["status"] != "ready"]
  if infos:
    raise CorpusError(_not_ready(infos, data_dir))


def load_split(domain: str, split: str, data_dir: str | None = None) -> list[str]:
  """The documents of one split of a prepared domain (CorpusError if it is not prepared)."""
  check(domain, DOMAINS, "domain")
  check(split, SPLITS, "split")
  require([domain], data_dir)
  with open(os.path.join(split_dir(domain, data_dir), f"{split}.jsonl"), encoding="utf-8") as f:
    return [json.loads(line)["text"] for line in f]


def _not_ready(infos: list[dict], data_dir: str | None) -> str:
  """One line: which domains, where, why, and the command that prepares them there."""
  names = [info["name"] for info in infos]
  command = f"{PREPARE_COMMAND} --domains {','.join(names)}"
  if data_dir:
    command += f" --data_dir {shlex.quote(data_dir)}"
  what = (f"domain {names[0]!r} is" if len(names) == 1
          else f"domains {', '.join(map(repr, names))} are")
  head = f"{what} not prepared under {data_root(data_dir)}"
  failed = []  # domains whose preparation was tried: status and the last line of why
  for info in infos:
    if info["status"] != "missing":
      why = (str(info.get("error") or "").strip().splitlines() or ["no reason recorded"])[-1]
      failed.append((f"{info['name']} " if len(infos) > 1 else "") + f"{info['status']}: {why}")
  if not failed:
    return f"{head}: run `{command}`"
  return f"{head} ({'; '.join(failed)}): run `{command}` to try again"
