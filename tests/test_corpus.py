"""Corpus loading: formats, metadata, and every kind of bad file (skipped with a warning, never fatal)."""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest

import rag.corpus as corpus
from rag.corpus import CorpusLoad, Document, load_corpus, load_file
from rag.errors import CorpusError

SEEDS = Path(__file__).resolve().parent.parent / "corpus"
ARTICLE = (
    "Der Videogipfel zwischen US-Präsident Joe Biden und Kremlchef Wladimir Putin dauerte rund zwei Stunden. "
    "Beide Seiten äußerten sich danach zurückhaltend über die Ergebnisse des Gesprächs."
)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ids(load: CorpusLoad) -> list[str]:
    return [d.id for d in load.documents]


def warned(load: CorpusLoad, name: str, *words: str) -> str:
    lines = [w for w in load.warnings if w.endswith(name) or f"{name} (" in w]
    assert lines, f"no warning about {name}: {load.warnings}"
    assert all("\n" not in w for w in load.warnings)
    for word in words:
        assert any(word in w for w in lines), (word, lines)
    return lines[0]


# --- the seed corpus --------------------------------------------------------------------------


def test_seed_corpus():
    load = load_corpus(SEEDS)
    assert ids(load) == [p.stem for p in sorted(SEEDS.glob("*.txt"))]
    assert len(load.documents) == 5
    assert ids(load)[0] == "000_aa78fff76f6e486e"
    assert not load.warnings and not load.skipped and not load.duplicates
    dated = {d.id: d.date for d in load.documents if d.date}
    assert dated == {"001_10c1cd6136e05353": "2021-12", "004_7576bd814954bde3": "2021-12"}
    for d in load.documents:
        assert d.source == f"{d.id}.txt"
        assert d.text == d.text.strip() and d.text == unicodedata.normalize("NFC", d.text)
        assert not d.text.lower().startswith("date"), "the date line is removed from the text"
        assert 10 < len(d.title) <= 81
        assert len(d.content_hash) == 64
    assert load_corpus(SEEDS).documents == load.documents, "deterministic"


# --- good files and metadata ------------------------------------------------------------------


def test_date_line_parsed_and_removed(tmp_path):
    write(tmp_path / "a.txt", " date 2021-12 " + ARTICLE)
    write(tmp_path / "b.txt", "Datum: 07.12.2021\n\n" + ARTICLE.replace("zwei", "drei"))
    write(tmp_path / "c.txt", "DATE 2021-12-07\n" + ARTICLE.replace("zwei", "vier"))
    write(tmp_path / "d.txt", "Datenschutz ist wichtig. " + ARTICLE)
    docs = {d.id: d for d in load_corpus(tmp_path).documents}
    assert docs["a"].date == "2021-12" and docs["a"].text == ARTICLE
    assert docs["b"].date == "2021-12-07" and docs["b"].text.startswith("Der Videogipfel")
    assert docs["c"].date == "2021-12-07" and docs["c"].text.startswith("Der Videogipfel")
    assert docs["d"].date is None and docs["d"].text.startswith("Datenschutz")


def test_front_matter(tmp_path):
    write(tmp_path / "fm.md", "---\ntitle: Biden warnt Putin\ndate: 2021-12-07\nurl: https://example.org/a\nid: gipfel-1\n---\n\n"
          + ARTICLE)
    write(tmp_path / "fm2.txt", "---\ntitle: Zweiter Text\ndate: 2021-12\n---\n" + ARTICLE.replace("zwei", "drei"))
    write(tmp_path / "broken.md", "---\ntitle: [kaputt\n---\n" + ARTICLE.replace("zwei", "fünf"))
    load = load_corpus(tmp_path)
    docs = {d.id: d for d in load.documents}
    d = docs["gipfel-1"]
    assert (d.title, d.date, d.url, d.source) == ("Biden warnt Putin", "2021-12-07", "https://example.org/a", "fm.md")
    assert d.text == ARTICLE
    assert docs["fm2"].date == "2021-12" and docs["fm2"].title == "Zweiter Text"
    assert "broken" in docs, "bad YAML: the file is kept as plain text"
    warned(load, "broken.md", "Front Matter")


def test_title_from_first_sentence(tmp_path):
    long_first = "Moskau/Washington - Der Videogipfel zwischen US-Präsident Joe Biden und dem russischen Staatschef dauerte lange. Danach."
    write(tmp_path / "a.txt", long_first)
    write(tmp_path / "b.md", "# Überschrift des Artikels\n\n" + ARTICLE)
    docs = {d.id: d for d in load_corpus(tmp_path).documents}
    title = docs["a"].title
    assert title.endswith("…") and len(title) <= 81
    assert long_first.startswith(title[:-1])
    assert long_first[len(title) - 1] == " ", "cut at a word"
    assert docs["b"].title == "Überschrift des Artikels"


def test_nested_folders_hidden_and_other_files(tmp_path):
    write(tmp_path / "sub" / "a.txt", ARTICLE)
    write(tmp_path / "sub" / "deeper" / "b.md", ARTICLE.replace("zwei", "drei"))
    write(tmp_path / "c.txt", ARTICLE.replace("zwei", "vier"))
    write(tmp_path / ".hidden.txt", ARTICLE.replace("zwei", "fünf"))
    write(tmp_path / ".git" / "x.txt", ARTICLE.replace("zwei", "sechs"))
    write(tmp_path / "notes.csv", "a;b")
    write(tmp_path / "image.jpg", b"\xff\xd8\xff\xe0")
    load = load_corpus(tmp_path)
    assert ids(load) == ["c", "sub/a", "sub/deeper/b"]
    assert [d.source for d in load.documents] == ["c.txt", "sub/a.txt", "sub/deeper/b.md"]
    assert not load.warnings and not load.skipped


def test_nfc_crlf_and_bom(tmp_path):
    nfd = unicodedata.normalize("NFD", "Größere Änderungen in München.\r\n\r\nZweiter Absatz über Ärger.")
    write(tmp_path / "a.txt", b"\xef\xbb\xbf" + nfd.encode("utf-8"))
    write(tmp_path / "b.txt", ("Ein Text in UTF-16 über Straßen.").encode("utf-16"))
    load = load_corpus(tmp_path)
    docs = {d.id: d for d in load.documents}
    assert docs["a"].text == "Größere Änderungen in München.\n\nZweiter Absatz über Ärger."
    assert docs["b"].text == "Ein Text in UTF-16 über Straßen."


def test_html_main_text_without_scripts(tmp_path):
    html = """<!doctype html><html><head><meta charset="utf-8"><title>Gipfel ohne Ergebnis</title>
    <style>.x { color: red } STYLETEXT</style>
    <script>var geheim = "SCRIPTTEXT"; console.log("SCRIPTTEXT");</script></head>
    <body><nav><a href="/">Startseite</a></nav>
    <article><h1>Gipfel ohne Ergebnis</h1>
    <p>Der Videogipfel zwischen Joe Biden und Wladimir Putin dauerte rund zwei Stunden, wie Agenturen meldeten.</p>
    <script>document.write("SCRIPT2")</script>
    <p>Biden drohte für den Fall einer Invasion mit harten Wirtschaftssanktionen gegen Russland.</p>
    <noscript>Bitte aktivieren Sie JavaScript.</noscript></article></body></html>"""
    write(tmp_path / "seite.html", html)
    write(tmp_path / "klein.htm", "<html><body><p>Nur ein kurzer Satz über Putin.</p><script>x='SCRIPT3'</script></body></html>")
    load = load_corpus(tmp_path)
    docs = {d.id: d for d in load.documents}
    d = docs["seite"]
    assert "Videogipfel zwischen Joe Biden" in d.text and "Wirtschaftssanktionen" in d.text
    for junk in ("SCRIPTTEXT", "SCRIPT2", "STYLETEXT", "geheim", "color", "<p>"):
        assert junk not in d.text
    assert "Gipfel" in d.title
    assert "\n\n" in d.text, "paragraphs kept"
    assert docs["klein"].text == "Nur ein kurzer Satz über Putin."


def test_jsonl(tmp_path):
    lines = [
        json.dumps({"id": "art-1", "text": ARTICLE, "title": "Eins", "date": "2021-12-07", "url": "https://x.de/1"}),
        "{kaputt",
        json.dumps({"text": ARTICLE.replace("zwei", "drei"), "source": "dpa"}),
        "",
        json.dumps({"title": "ohne Text"}),
        json.dumps({"text": "   "}),
        json.dumps([1, 2]),
        json.dumps({"text": ARTICLE.replace("zwei", "vier"), "id": 7}),
    ]
    write(tmp_path / "sub" / "news.jsonl", "\n".join(lines) + "\n")
    load = load_corpus(tmp_path)
    docs = {d.id: d for d in load.documents}
    assert list(docs) == ["art-1", "sub/news#3", "7"]
    assert (docs["art-1"].title, docs["art-1"].date, docs["art-1"].url) == ("Eins", "2021-12-07", "https://x.de/1")
    assert docs["sub/news#3"].source == "dpa"
    assert docs["art-1"].source == "sub/news.jsonl"
    assert sorted(load.skipped) == ["sub/news.jsonl#2", "sub/news.jsonl#5", "sub/news.jsonl#6", "sub/news.jsonl#7"]
    assert any("Zeile 2" in w and "sub/news.jsonl" in w for w in load.warnings)
    assert len(load.warnings) == 4


# --- bad files --------------------------------------------------------------------------------


def test_bad_files_are_skipped_with_a_warning(tmp_path):
    write(tmp_path / "good.txt", ARTICLE)
    write(tmp_path / "empty.txt", "")
    write(tmp_path / "blank.md", "  \n\t\n  ")
    write(tmp_path / "nul.txt", b"Text\x00mit\x00Nullbytes" * 20)
    write(tmp_path / "image.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    write(tmp_path / "garbage.txt", bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D, 0x01, 0x02, 0x03, 0x04, 0x05, 0xFF, 0xFE]) * 100)
    write(tmp_path / "onlydate.txt", " date 2021-12 ")
    write(tmp_path / "empty.html", "<html><head><script>x=1</script></head><body></body></html>")
    load = load_corpus(tmp_path)
    assert ids(load) == ["good"]
    assert sorted(load.skipped) == sorted(["empty.txt", "blank.md", "nul.txt", "image.txt", "garbage.txt", "onlydate.txt", "empty.html"])
    assert len(load.warnings) == 7
    assert warned(load, "empty.txt") == "übersprungen (leer): empty.txt"
    warned(load, "blank.md", "leer")
    warned(load, "nul.txt", "Binärdatei")
    warned(load, "image.txt", "Binärdatei")
    warned(load, "garbage.txt", "übersprungen")
    warned(load, "onlydate.txt", "leer")
    warned(load, "empty.html", "leer")
    for w in load.warnings:
        assert w.startswith("übersprungen (")


def test_load_file_raises_corpus_error(tmp_path):
    bad = write(tmp_path / "empty.txt", "")
    with pytest.raises(CorpusError, match="leer"):
        load_file(bad, tmp_path)
    good = write(tmp_path / "sub" / "a.txt", ARTICLE)
    [doc] = load_file(good, tmp_path)
    assert doc.id == "sub/a"


def test_latin1_and_cp1252_decoded_with_warning(tmp_path):
    text = "Die Straße in München war überfüllt. Größere Änderungen folgen später, sagte Jürgen Weiß."
    write(tmp_path / "latin1.txt", text.encode("latin-1"))
    write(tmp_path / "cp1252.txt", ("„Zitat“ – " + text.replace("später", "bald")).encode("cp1252"))
    load = load_corpus(tmp_path)
    docs = {d.id: d for d in load.documents}
    assert docs["latin1"].text == text
    assert docs["cp1252"].text.startswith("„Zitat“ – Die Straße")
    assert warned(load, "latin1.txt") == "kein UTF-8, als cp1252 gelesen: latin1.txt"
    warned(load, "cp1252.txt", "als cp1252 gelesen")
    assert not load.skipped


def test_duplicates_indexed_once(tmp_path):
    write(tmp_path / "b.txt", ARTICLE)
    write(tmp_path / "a.txt", ARTICLE)
    write(tmp_path / "sub" / "c.md", ARTICLE.replace(". ", ".\r\n") + "\n")  # same text, other whitespace
    load = load_corpus(tmp_path)
    assert ids(load) == ["a"]
    assert load.duplicates == [("b", "a"), ("sub/c", "a")]
    warned(load, "b.txt", "Duplikat von a")
    assert not load.skipped


def test_same_id_from_two_files(tmp_path):
    write(tmp_path / "x.md", ARTICLE)
    write(tmp_path / "x.txt", ARTICLE.replace("zwei", "drei"))
    load = load_corpus(tmp_path)
    assert ids(load) == ["x", "x.txt"]
    assert len(set(ids(load))) == 2
    warned(load, "x.txt", "doppelt")


def test_symlink_outside_root_not_followed(tmp_path):
    root, outside = tmp_path / "korpus", tmp_path / "draußen"
    write(root / "a.txt", ARTICLE)
    secret = write(outside / "geheim.txt", "Geheimer Text, der nicht ins Korpus gehört.")
    os.symlink(secret, root / "link.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "a.txt", root / "intern.txt")  # inside the root: followed, a duplicate
    os.symlink(root / "fehlt.txt", root / "kaputt.txt")
    load = load_corpus(root)
    assert ids(load) == ["a"]
    assert all("Geheim" not in d.text for d in load.documents)
    warned(load, "link.txt", "außerhalb")
    warned(load, "linkdir", "außerhalb")
    warned(load, "kaputt.txt", "Leere")
    assert load.duplicates == [("intern", "a")]


def test_size_limit(tmp_path, monkeypatch):
    paragraph = ARTICLE + "\n\n"
    big = paragraph * (5 * 1024 * 1024 // len(paragraph.encode()) + 1)
    write(tmp_path / "big.txt", big)
    load = load_corpus(tmp_path)
    assert ids(load) == ["big"] and len(load.documents[0].text.encode()) > 5 * 1024 * 1024
    monkeypatch.setattr(corpus, "MAX_FILE_BYTES", 1024 * 1024)
    load = load_corpus(tmp_path)
    assert ids(load) == [] and load.skipped == ["big.txt"]
    warned(load, "big.txt", "zu groß")


def test_nonexistent_root(tmp_path):
    with pytest.raises(CorpusError, match="Korpusordner nicht gefunden"):
        load_corpus(tmp_path / "gibtsnicht")
    with pytest.raises(CorpusError):
        load_corpus(write(tmp_path / "datei.txt", ARTICLE))


def test_empty_root(tmp_path):
    load = load_corpus(tmp_path)
    assert load.documents == [] and load.warnings == [] and load.duplicates == []


def test_document_hash():
    a = Document(id="a", text="Text.", title="T", date="2021-12", source="a.txt")
    assert a.content_hash == Document(id="b", text="Text.", title="T", date="2021-12", source="b.txt").content_hash
    assert a.content_hash != Document(id="a", text="Text.", title="T", date="2021-11", source="a.txt").content_hash
    assert a.content_hash != Document(id="a", text="Text.", title="T", date="2021-12", source="a.txt", url="u").content_hash
    assert Document(id="a", text="x", title="", date=None, source="a", content_hash="abc").content_hash == "abc"
