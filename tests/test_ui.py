"""Web UI plumbing (fast, fake embedder): escaping, highlight, abstention, safe uploads, removal,
the index swap during a rebuild, and the named `/answer` API endpoint."""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from fakes import FakeEmbedder, HeldBuild
from rag import Config
from rag.corpus import Document
from ui import render
from ui.files import UploadError, remove_article, sanitize_filename, save_upload

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "corpus"
EVIL = '<script>alert("x")</script><img src=x onerror="window.__xss=1">'


def _passage(text, highlight, doc_id="gipfel", start=100, **kw):
    p = {
        "text": text, "doc_id": doc_id, "title": kw.get("title", "Gipfel"), "date": kw.get("date", "2021-12-07"),
        "source": f"{doc_id}.txt", "start": start, "end": start + len(text), "score": 1.0,
        "highlight": list(highlight) if highlight else None, "url": kw.get("url"), "chunk_ids": [1],
    }
    p["highlighted"] = text[highlight[0] : highlight[1]] if highlight else ""
    return p


def _answer(question, passages, abstained=False, agreement=None, message=""):
    return {
        "question": question, "abstained": abstained, "message": message,
        "phrase": passages[0]["highlighted"] if passages and not abstained else "",
        "confidence": 0.9, "agreement": agreement, "passages": passages,
    }


# ---------------------------------------------------------------- rendering


def test_render_escapes_question_and_corpus_text():
    text = f"Vorher {EVIL} dauerte rund zwei Stunden."
    a, b = text.index("rund"), text.index(" Stunden") + len(" Stunden")
    p = _passage(text, (a, b), doc_id='x"><script>1</script>', title=EVIL, url="javascript:alert(1)")
    agreement = {"phrases": [["x", EVIL]], "agree": False, "line": f"2 Quellen weichen voneinander ab: {EVIL}"}
    html = render.render_turn(EVIL, render.render_answer_body(_answer(EVIL, [p], agreement=agreement)), "t1")
    html += render.render_log([html])
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "javascript:" not in html  # only http(s) links are rendered
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=" in html
    # The payload of the "Im Artikel zeigen" button survives escaping as valid JSON.
    payload = html.split('data-open="', 1)[1].split('"', 1)[0]
    import html as _html

    assert json.loads(_html.unescape(payload))["doc"] == 'x"><script>1</script>'


def test_highlight_marks_the_answering_phrase():
    text = "Der Videogipfel dauerte rund zwei Stunden, wie Agenturen meldeten."
    a = text.index("rund zwei Stunden")
    p = _passage(text, (a, a + len("rund zwei Stunden")))
    html = render.render_answer_body(_answer("Wie lange dauerte der Gipfel?", [p]))
    assert "<mark>rund zwei Stunden</mark>" in html
    assert html.count("<mark>") == 2  # the answer line and the quote
    assert "Zeichen 100–" in html and "<code>gipfel</code>" in html and "07.12.2021" in html


def test_agreement_line_is_shown():
    text = "Das Treffen dauerte rund zwei Stunden."
    a = text.index("rund")
    ps = [_passage(text, (a, a + 17), doc_id="a"), _passage(text, (a, a + 17), doc_id="b")]
    agr = {"phrases": [["a", "rund zwei Stunden"], ["b", "rund zwei Stunden"]], "agree": True,
           "line": "2 Quellen stimmen überein: rund zwei Stunden · rund zwei Stunden"}
    html = render.render_answer_body(_answer("Wie lange?", ps, agreement=agr))
    assert "rag-agree" in html and "2 Quellen stimmen überein" in html
    assert html.count('class="rag-card"') == 2


def test_a_follow_up_names_the_question_it_leaned_on():
    a = {"question": "Und wer?", "abstained": False, "phrase": "Sullivan", "agreement": None, "context": "Wer <b>drohte</b>?",
         "passages": []}
    html = render.render_answer_body(a)
    assert "Bezogen auf" in html and "Wer &lt;b&gt;drohte&lt;/b&gt;?" in html
    assert "Bezogen auf" not in render.render_answer_body({**a, "context": None})


def test_abstention_is_rendered_as_such():
    msg = "Das steht nicht im Korpus: keiner der Artikel beantwortet diese Frage."
    html = render.render_answer_body(_answer("Wer gewann die WM 2014?", [], abstained=True, message=msg))
    assert "rag-abstain" in html and "steht nicht im Korpus" in html
    assert "rag-card" not in html and "<mark>" not in html


def test_article_view_marks_quote_and_phrase_in_place():
    text = "Erster Satz <b>fett</b>. Der Gipfel dauerte rund zwei Stunden. Letzter Satz."
    doc = Document(id="gipfel", text=text, title="Gipfel <i>", date="2021-12", source="gipfel.txt")
    q0 = text.index("Der Gipfel")
    q1 = text.index("Letzter") - 1
    h0 = text.index("rund")
    h1 = h0 + len("rund zwei Stunden")
    html = render.render_article(doc, (q0, q1), (h0, h1))
    assert "&lt;b&gt;fett&lt;/b&gt;" in html and "<b>" not in html and "Gipfel &lt;i&gt;" in html
    assert '<span class="rag-inquote" id="rag-quote">Der Gipfel dauerte <mark>rund zwei Stunden</mark>.</span>' in html
    assert "Dezember 2021" in html


def test_mark_spans_keeps_markup_well_formed():
    assert render.mark_spans("abcdef", [(0, 3, "<span>"), (2, 5, "<mark>")]) == "<span>ab<mark>c</mark></span><mark>de</mark>f"
    assert render.mark_spans("a<b", [(1, 2, "<mark>")]) == "a<mark>&lt;</mark>b"
    assert render.mark_spans("abc", [(5, 9, "<mark>"), (2, 1, "<mark>")]) == "abc"


# ---------------------------------------------------------------- file names and uploads


@pytest.mark.parametrize(
    "name",
    ["../x.txt", "..\\x.txt", "a/../../x.txt", "/etc/passwd.txt", "/tmp/x.txt", "C:\\x.txt", "~/x.txt", "sub/x.txt",
     "x.exe", "x.txt.exe", "x", "x.pdf", ".hidden.txt", "", "   ", "x\x00.txt", "x\n.txt", "..txt", "x" * 200 + ".txt", ".txt"],
)
def test_sanitize_filename_rejects_unsafe_names(name):
    with pytest.raises(UploadError):
        sanitize_filename(name)


@pytest.mark.parametrize(
    "name, expected",
    [("bericht.txt", "bericht.txt"), ("Neuer Artikel.md", "Neuer_Artikel.md"), ("Brücke.HTML", "Brücke.html"),
     ("daten-2022.jsonl", "daten-2022.jsonl"), ("a.b.htm", "a.b.htm")],
)
def test_sanitize_filename_accepts_plain_names(name, expected):
    assert sanitize_filename(name) == expected


def _src(tmp_path, name, content):
    d = tmp_path / "upload"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def test_upload_writes_only_inside_the_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    src = _src(tmp_path, "artikel.txt", "Der Bürgermeister eröffnete die Brücke am 3. März 2022.")
    before = set(tmp_path.iterdir())
    res = save_upload(src, corpus)
    assert res.path == corpus / "artikel.txt" and res.path.read_text(encoding="utf-8").startswith("Der Bürgermeister")
    assert res.doc_ids == ["artikel"]
    for evil in ["../evil.txt", "/tmp/evil.txt", "..", "sub/evil.txt"]:
        with pytest.raises(UploadError):
            save_upload(src, corpus, name=evil)
    assert set(tmp_path.iterdir()) == before  # nothing written beside the corpus
    assert sorted(p.name for p in corpus.iterdir()) == ["artikel.txt"]  # no leftovers (.part files)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_upload_refuses_wrong_type_oversize_empty_and_binary(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with pytest.raises(UploadError, match="nicht erlaubt"):
        save_upload(_src(tmp_path, "x.pdf", "%PDF-1.4"), corpus)
    with pytest.raises(UploadError, match="zu groß"):
        save_upload(_src(tmp_path, "gross.txt", "Wort " * 3000), corpus, max_bytes=10_000)
    with pytest.raises(UploadError, match="leer"):
        save_upload(_src(tmp_path, "leer.txt", ""), corpus)
    with pytest.raises(UploadError, match="nicht verwendbar"):
        save_upload(_src(tmp_path, "bild.txt", b"\x89PNG\r\n\x1a\n\x00\x00binary"), corpus)
    assert list(corpus.iterdir()) == []


def test_upload_never_silently_replaces_an_article(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "gipfel.txt").write_text("Der Gipfel dauerte zwei Stunden.", encoding="utf-8")
    existing = {"gipfel": Document(id="gipfel", text="Der Gipfel dauerte zwei Stunden.", title="G", date=None, source="gipfel.txt")}
    # Same file name, other content: refused unless asked for.
    src = _src(tmp_path, "gipfel.txt", "Der Gipfel dauerte drei Stunden.")
    with pytest.raises(UploadError, match="gibt es schon"):
        save_upload(src, corpus, existing=existing)
    assert "zwei" in (corpus / "gipfel.txt").read_text(encoding="utf-8")
    res = save_upload(src, corpus, existing=existing, overwrite=True)
    assert res.replaced and "drei" in (corpus / "gipfel.txt").read_text(encoding="utf-8")
    # Another file whose article id is taken by an indexed article.
    with pytest.raises(UploadError, match="ID schon vergeben"):
        save_upload(_src(tmp_path, "gipfel.md", "# Gipfel\n\nGanz anderer Text über den Gipfel."), corpus, existing=existing)
    # The same text under another name is a duplicate.
    with pytest.raises(UploadError, match="schon im Korpus"):
        save_upload(_src(tmp_path, "kopie.txt", "Der  Gipfel dauerte zwei Stunden."), corpus, existing=existing)
    # Identical re-upload is a no-op.
    assert save_upload(src, corpus, existing=existing).unchanged


def test_remove_article_deletes_txt_and_blanks_jsonl_line(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Artikel A.", encoding="utf-8")
    records = ({"id": "j1", "text": "Erster Artikel."}, {"text": "Zweiter Artikel."}, {"id": "j3", "text": "Dritter."})
    lines = [json.dumps(r) for r in records]
    (corpus / "viele.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    from rag.corpus import load_corpus

    docs = {d.id: d for d in load_corpus(corpus).documents}
    assert set(docs) == {"a", "j1", "viele#2", "j3"}
    remove_article(docs["a"], corpus)
    assert not (corpus / "a.txt").exists()
    remove_article(docs["j1"], corpus)
    after = {d.id for d in load_corpus(corpus).documents}
    assert after == {"viele#2", "j3"}  # line numbers, and so the ids, of the others are kept
    remove_article(docs["viele#2"], corpus)
    remove_article(docs["j3"], corpus)
    assert list(corpus.iterdir()) == []


# ---------------------------------------------------------------- the service and the app (fake model)


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory):
    from ui.app import create_app

    root = tmp_path_factory.mktemp("fake-app")
    corpus = root / "corpus"
    corpus.mkdir()
    for p in SEEDS.glob("*.txt"):
        shutil.copy(p, corpus / p.name)
    # These tests are about plumbing: the rules-only reader (the trained one is tested with the real
    # model), which never abstains here (the fake model's similarities are low).
    demo = create_app(root / "index", corpus, config=Config(reader="heuristic", abstain_threshold=-1.0), embedder=FakeEmbedder())
    return demo


def test_service_answers_and_serves_only_indexed_articles(fake_app):
    svc = fake_app.rag_service
    ans, hashes = svc.answer_with_hashes("Wie lange dauerte der Videogipfel zwischen Biden und Putin?", k=2, mode="bm25")
    assert ans.passages and set(hashes) == {p.doc_id for p in ans.passages}
    p = ans.passages[0]
    html = svc.article_html(render.open_payload(p.to_dict(), hashes[p.doc_id]))
    assert "<mark>" in html and render.esc(p.doc_id) in html
    assert "nicht (mehr) im Index" in svc.article_html({"doc": "../../etc/passwd"})
    assert "Ungültige Anfrage" in svc.article_html("kein json")
    stale = svc.article_html({"doc": p.doc_id, "start": 0, "end": 5, "hash": "alt"})
    assert "geändert" in stale and "rag-inquote" not in stale
    with pytest.raises(Exception, match="zwischen 1 und 5"):
        svc.answer_with_hashes("Frage?", k=9)
    with pytest.raises(Exception, match="Suchverfahren"):
        svc.answer_with_hashes("Frage?", mode="sql")


def test_upload_rebuild_remove_roundtrip(fake_app, tmp_path):
    svc = fake_app.rag_service
    src = _src(tmp_path, "kleinstadt.txt", "Der Bürgermeister von Kleinstadt eröffnete die Brücke am 3. März 2022.")
    saved, errors, idx = svc.upload([(str(src), "kleinstadt.txt"), (str(src), "../boese.txt")])
    assert [r.name for r in saved] == ["kleinstadt.txt"] and len(errors) == 1
    assert "kleinstadt" in svc.index.documents and idx is svc.index
    assert not (svc.corpus_path.parent / "boese.txt").exists()
    idx, msg = svc.remove("kleinstadt")
    assert "kleinstadt" not in svc.index.documents and not (svc.corpus_path / "kleinstadt.txt").exists()


def test_questions_are_answered_from_the_old_index_during_a_rebuild(tmp_path):
    from ui.app import create_app

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "gipfel.txt").write_text("Der Videogipfel dauerte rund zwei Stunden.", encoding="utf-8")
    svc = create_app(tmp_path / "index", corpus, config=Config(abstain_threshold=-1.0), embedder=FakeEmbedder()).rag_service
    old = svc.index
    (corpus / "neu.txt").write_text("Die Nato verlegte Truppen nach Polen.", encoding="utf-8")
    held = HeldBuild()  # the rebuild stops after embedding the new article, before writing the version
    t = threading.Thread(target=svc.rebuild, kwargs={"progress": held})
    t.start()
    try:
        assert held.reached.wait(30), "the rebuild never got past embedding"
        assert svc.index is old  # still building
        ans, _ = svc.answer_with_hashes("Wie lange dauerte der Videogipfel?", mode="bm25")
        # Answered from the old version (the new article is not visible yet), not refused or failed.
        assert ans.passages[0].doc_id == "gipfel" and "neu" not in {p.doc_id for p in ans.passages}
    finally:
        held.release.set()
        t.join(60)
    assert not t.is_alive()
    assert svc.index is not old and "neu" in svc.index.documents
    assert "neu" not in old.documents  # the old object was never changed


def test_answer_api_endpoint(fake_app):
    from gradio_client import Client

    from ui.app import launch_app

    _, url, _ = launch_app(fake_app, port=None, block=False, quiet=True)  # the server takes a free port
    try:
        client = Client(url, verbose=False)
        info = client.view_api(print_info=False, return_format="dict")
        assert "/answer" in info["named_endpoints"]
        params = [p["parameter_name"] for p in info["named_endpoints"]["/answer"]["parameters"]]
        assert params == ["question", "k", "mode", "history"]
        res = client.predict("Wie lange dauerte der Videogipfel?", api_name="/answer")
        assert set(res) >= {"question", "abstained", "phrase", "passages", "agreement", "message"}
        res = client.predict("Wie lange dauerte der Videogipfel?", 1, "bm25", api_name="/answer")
        assert len(res["passages"]) <= 1
        res = client.predict("Und wer hat das gemeldet?", 2, "bm25", ["Wie lange dauerte der Videogipfel?"], api_name="/answer")
        assert "context" in res and res["context"] in (None, "Wie lange dauerte der Videogipfel?")
        with pytest.raises(Exception, match="Frage ist leer"):
            client.predict("   ", api_name="/answer")
    finally:
        fake_app.close()
