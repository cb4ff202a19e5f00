"""Embedded corpora: wiki cleaning, filtering, deterministic splits, end-to-end preparation, and
reading that never prepares (nor runs a command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dft_jax.data import cleaning, corpora, prepare, sources

_WIKI = """{{Infobox person|name=Ada {{nowrap|Lovelace}}|born={{birth date|1815|12|10}}}}
'''Augusta Ada King''' was an ''English'' [[mathematician]] and [[Writer (occupation)|writer]].<ref name="x">{{cite web|url=http://a.b}}</ref>
== Early life ==
She worked on [[Charles Babbage|Babbage]]'s [http://example.org Analytical Engine].<ref>Toole, p.&nbsp;5</ref>
[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace|Ada]] [1840]]]
{| class="wikitable"
|-
| cell {{flag|UK}} || {| inner |} more
|}
* Notes &amp; letters<br/>
[[Category:Mathematicians]]
"""


def test_clean_wiki_strips_markup():
  assert cleaning.clean_wiki(_WIKI) == (
      "Augusta Ada King was an English mathematician and writer.\n\n"
      "She worked on Babbage's Analytical Engine.\n\n"
      "Notes & letters")


def test_normalize_and_reflow():
  assert cleaning.normalize("a  b\nc\n\n\n  d\t e ") == "a b c\n\nd e"
  entry = "WORD, n.  A thing\nwrapped.\n\n    Verse one\n    verse two\n        G.J.\n"
  assert cleaning.normalize(cleaning.reflow(entry), keep_lines=True) == (
      "WORD, n. A thing wrapped.\n\nVerse one\nverse two\nG.J.")


def test_dedup_and_short_filter():
  docs = ["x" * 250, "short", "y" * 250, "x" * 250, "z" * 199]
  assert cleaning.dedup_filter(docs, 200) == ["x" * 250, "y" * 250]
  assert cleaning.dedup_filter(docs, 5) == ["x" * 250, "short", "y" * 250, "z" * 199]


def test_replaced_characters_counted():
  text, bad = cleaning.decode(b"caf\xe9 \xff\xfe ok \xef\xbf\xbd")  # the last is a real U+FFFD
  assert bad == 3 and text.startswith("caf\ufffd") and text.endswith("ok \ufffd")
  assert cleaning.decode("naïve".encode()) == ("naïve", 0)


def test_split_is_deterministic_disjoint_and_proportioned():
  docs = [f"document number {i}" for i in range(200)]
  a, b = cleaning.split_documents(docs), cleaning.split_documents(list(reversed(docs)))
  assert a == b
  assert sorted(sum(a.values(), [])) == sorted(docs)
  assert {k: len(v) for k, v in a.items()} == {"train": 160, "validation": 20, "test": 20}
  wide = cleaning.split_documents(docs[:106], held_out=0.38)  # the encyclopedia's
  assert {k: len(v) for k, v in wide.items()} == {"train": 26, "validation": 40, "test": 40}
  small = cleaning.split_documents(docs[:3])
  assert all(len(small[s]) == 1 for s in corpora.SPLITS)
  with pytest.raises(ValueError):
    cleaning.split_documents(docs[:2])


def test_chunk_paragraphs_sizes():
  text = "\n\n".join(f"{i} " + "w" * 400 for i in range(40))
  chunks = cleaning.chunk_paragraphs(text)
  assert "\n\n".join(chunks) == text
  assert all(1500 <= len(c) <= 3000 for c in chunks[:-1]) and len(chunks[-1]) >= 750


def test_unknown_domain_and_split(tmp_path):
  with pytest.raises(ValueError, match=r"unknown domain 'poetry'.*news.*legal"):
    corpora.load_split("poetry", "train", str(tmp_path))
  with pytest.raises(ValueError, match=r"unknown split 'dev'.*validation"):
    corpora.load_split("legal", "dev", str(tmp_path))


def _cli(*args, data_dir):
  return subprocess.run([sys.executable, "-m", "dft_jax.data.prepare", *args,
                         f"--data_dir={data_dir}"], capture_output=True, text=True, check=True)


@pytest.mark.skipif(not os.path.isdir("/usr/share/common-licenses"), reason="not a Debian system")
def test_prepare_legal_end_to_end(tmp_path):
  info = prepare.prepare(["legal"], str(tmp_path))["legal"]
  assert info == corpora.manifest("legal", str(tmp_path))
  assert info["status"] == "ready" and info["name"] == "legal"
  assert info["source"].startswith("Debian base-files") and "verbatim" in info["license"]
  splits = {s: corpora.load_split("legal", s, str(tmp_path)) for s in corpora.SPLITS}
  assert info["documents"] == sum(len(v) for v in splits.values()) >= 20
  assert all(info["splits"][s]["documents"] == len(splits[s]) >= 1 for s in corpora.SPLITS)
  assert info["bytes"] == sum(len(d.encode()) for v in splits.values() for d in v)
  assert all(len(d) >= 200 and "  " not in d for v in splits.values() for d in v)
  first = open(os.path.join(corpora.split_dir("legal", str(tmp_path)), "train.jsonl"), "rb").read()
  prepare.prepare(["legal"], str(tmp_path), force=True)
  assert open(os.path.join(corpora.split_dir("legal", str(tmp_path)), "train.jsonl"),
              "rb").read() == first
  done = subprocess.run([sys.executable, "-m", "dft_jax.data.prepare", "--domains=legal",
                         "--force", f"--data_dir={tmp_path}"], capture_output=True, text=True,
                        check=True)
  assert "corpora: legal: ready" in done.stderr
  assert open(os.path.join(corpora.split_dir("legal", str(tmp_path)), "train.jsonl"),
              "rb").read() == first

  rows = json.loads(_cli("--list", "--json", data_dir=tmp_path).stdout.strip().splitlines()[-1])
  assert [r["name"] for r in rows] == list(corpora.DOMAINS)
  legal = rows[corpora.DOMAINS.index("legal")]
  assert legal["documents"] == info["documents"] and legal["bytes"] == info["bytes"]
  assert {"name", "documents", "bytes", "license", "source", "status"} <= set(legal)
  assert all(r["documents"] == 0 for r in rows if r["name"] != "legal")


@pytest.mark.skipif(not os.path.isdir("/usr/share/common-licenses"), reason="not a Debian system")
def test_a_domain_prepared_with_another_split_is_prepared_again(tmp_path, monkeypatch):
  before = prepare.prepare(["legal"], str(tmp_path))["legal"]
  assert before["held_out"] == 0.1
  monkeypatch.setitem(prepare._HELD_OUT, "legal", 0.3)
  after = prepare.prepare(["legal"], str(tmp_path))["legal"]   # no --force
  assert after["held_out"] == 0.3 and after["documents"] == before["documents"]
  assert after["splits"]["test"]["documents"] > before["splits"]["test"]["documents"]
  assert len(corpora.load_split("legal", "test", str(tmp_path))) == \
      after["splits"]["test"]["documents"]


def test_unavailable_domain_is_reported(tmp_path, monkeypatch):
  def broken(cache):
    raise RuntimeError("apt-get download dict-devil failed: no network")
  monkeypatch.setitem(prepare._READERS, "literary", broken)
  info = prepare.prepare(["literary"], str(tmp_path))["literary"]
  assert info["status"] == "unavailable" and "no network" in info["error"]
  with pytest.raises(RuntimeError, match="unavailable") as e:
    corpora.load_split("literary", "train", str(tmp_path))
  assert str(e.value) == (
      f"domain 'literary' is not prepared under {tmp_path} (unavailable: RuntimeError: apt-get "
      "download dict-devil failed: no network): run `python -m dft_jax.data.prepare --domains "
      f"literary --data_dir {tmp_path}` to try again")


def test_unprepared_domain_names_the_prepare_command_and_runs_nothing(tmp_path, monkeypatch):
  def no_command(*args, **kwargs):
    raise AssertionError(f"reading a corpus ran a command: {args}")
  monkeypatch.setattr(subprocess, "run", no_command)
  monkeypatch.setattr(subprocess, "Popen", no_command)
  with pytest.raises(corpora.CorpusError) as e:
    corpora.load_split("news", "train", str(tmp_path))
  assert str(e.value) == (f"domain 'news' is not prepared under {tmp_path}: run "
                          f"`python -m dft_jax.data.prepare --domains news --data_dir {tmp_path}`")
  assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)  # callers catch
  assert not os.listdir(tmp_path)  # nothing fetched or written either
  monkeypatch.setenv("DFT_JAX_DATA", str(tmp_path / "env"))
  with pytest.raises(ValueError) as e:
    sources.documents("encyclopedia", "validation")
  assert str(e.value) == (f"domain 'encyclopedia' is not prepared under {tmp_path / 'env'}: "
                          "run `python -m dft_jax.data.prepare --domains encyclopedia`")
  with pytest.raises(ValueError) as e:  # several named: one command prepares them all
    sources.documents("news,legal", "train")
  assert str(e.value) == (f"domains 'news', 'legal' are not prepared under {tmp_path / 'env'}: "
                          "run `python -m dft_jax.data.prepare --domains news,legal`")
  assert not os.listdir(tmp_path)


def _fake_gensim_wheel(cache):
  """A gensim wheel as the registry ships it, holding small versions of the two members the
  readers take (the Lee corpus, the bz2 Wikipedia dump), placed where `prepare` looks."""
  import bz2
  import zipfile
  name, version = corpora.GENSIM.split("==")
  os.makedirs(os.path.join(cache, "pypi"))
  lee = "First news article , about a storm .\nSecond article\u2019s text .\n"
  page = ("<page><title>{t}</title><ns>{ns}</ns><revision><text>{body}</text></revision>"
          "</page>")
  article = ("'''Anarchism''' is a [[political philosophy|philosophy]] of the ''movement''."
             "{{cite}}")
  dump = ("<mediawiki xmlns='http://www.mediawiki.org/xml/export-0.10/'>"
          + page.format(t="Anarchism", ns=0, body=article)
          + page.format(t="AccessibleComputing", ns=0, body="#REDIRECT [[Accessibility]]")
          + page.format(t="Talk:Anarchism", ns=1, body="A talk page.")
          + "</mediawiki>")
  with zipfile.ZipFile(os.path.join(cache, "pypi", f"{name}-{version}-cp311-none-any.whl"),
                       "w") as z:
    z.writestr(corpora.LEE, lee.encode())
    z.writestr(corpora.ENWIKI, bz2.compress(dump.encode()))


def test_news_and_encyclopedia_readers_on_a_gensim_shaped_wheel(tmp_path):
  """The demo's domain and news read from their archive members: main-namespace articles
  only, markup stripped, redirects and talk pages dropped, one news article per line."""
  _fake_gensim_wheel(str(tmp_path))
  docs, bad, source = prepare.read_encyclopedia(str(tmp_path))
  assert bad == 0 and source.endswith(corpora.ENWIKI)
  assert docs == ["Anarchism is a philosophy of the movement."]
  news, _, _ = prepare.read_news(str(tmp_path))
  assert [d for d in news if d] == ["First news article , about a storm .",
                                    "Second article\u2019s text ."]


def test_prepare_news_end_to_end(tmp_path):
  """Downloads the gensim wheel (~25 MB) from the package index; skipped only when the index
  cannot be reached, so a reader bug fails."""
  info = prepare.prepare(["news"], str(tmp_path))["news"]
  if info["status"] != "ready":
    offline = any(s in info["error"] for s in ("pip download", "network", "connection"))
    if not offline:
      pytest.fail(f"news reader failed: {info['error']}")
    pytest.skip(f"package index unreachable: {info['error']}")
  assert info["source"] == "PyPI gensim==4.4.0: gensim/test/test_data/lee_background.cor"
  assert info["documents"] > 250 and "LGPL-2.1" in info["license"]
  test = corpora.load_split("news", "test", str(tmp_path))
  assert len(test) == info["splits"]["test"]["documents"]


_OSIS = """<?xml version="1.0" encoding="UTF-8"?>
<osis xmlns="http://www.bibletechnologies.net/2003/OSIS/namespace"><osisText>
<div type="book" osisID="Gen"><title type="main">THE FIRST BOOK OF MOSES</title>
<chapter osisID="Gen.1"><title type="chapter">CHAPTER 1.</title>
<verse osisID="Gen.1.1" sID="Gen.1.1"/><w lemma="strong:H07225">In the beginning</w> <w>God</w>
<w>created</w> the heaven.<note type="study">Heb. a note</note><verse eID="Gen.1.1"/>
<verse sID="Gen.1.2"/><milestone type="x-p" marker="P"/>And <transChange type="added">it
was</transChange> so.<verse eID="Gen.1.2"/></chapter>
<chapter osisID="Gen.2"><verse sID="Gen.2.1"/>Thus the heavens were finished.<verse eID="Gen.2.1"/></chapter></div>
<div type="book" osisID="Ps"><chapter osisID="Ps.1"><verse sID="Ps.1.1"/>A psalm, not narrative.</chapter></div>
</osisText></osis>"""


def test_narrative_reader_keeps_the_narrative_books_words_only(tmp_path, monkeypatch):
  """One chapter per document, words of every verse (added words kept), without notes and
  titles; books outside NARRATIVE_BOOKS dropped."""
  path = tmp_path / "kjv.xml"
  path.write_text(_OSIS, encoding="utf-8")
  monkeypatch.setattr(prepare, "_debian_files",
                      lambda package, paths, cache: ([str(path)], f"Debian {package} 1.0"))
  docs, bad, source = prepare.read_narrative(str(tmp_path))
  assert bad == 0 and source.startswith("Debian bibledit-data 1.0: usr/share/bibledit/sources")
  assert docs == ["In the beginning God created the heaven. And it was so.",
                  "Thus the heavens were finished."]


def test_wisdom_reader_keeps_the_poetry_books_only(tmp_path, monkeypatch):
  """The same Bible, the other books: Psalms kept, Genesis (narrative) dropped."""
  path = tmp_path / "kjv.xml"
  path.write_text(_OSIS, encoding="utf-8")
  monkeypatch.setattr(prepare, "_debian_files",
                      lambda package, paths, cache: ([str(path)], f"Debian {package} 1.0"))
  docs, _, source = prepare.read_wisdom(str(tmp_path))
  assert docs == ["A psalm, not narrative."]
  assert source.endswith("(Job, Ps, Prov, Eccl, Song, Lam)")
