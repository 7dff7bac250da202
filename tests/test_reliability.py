"""Reliability and security under hostile conditions (fake embedder, small corpora, < 60 s).

Gaps the other test files leave open: one build over a corpus with every kind of bad file at
once, hostile and fuzzed questions, SIGKILL during the write/switch phase, two build *processes*,
byte-level corruption of every index file with `rag build` (CLI) as the repair, 20 clients during
rebuilds, bounded memory, the web server's binding and login, hostile viewer payloads, and
fuzzing of the corpus loader and the question path.
"""
from __future__ import annotations

import functools
import hashlib
import html as _html
import json
import os
import random
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import FakeEmbedder
from rag import Config, CorpusError, IndexCorruptError, IndexLockedError, QuestionError, RagError
from rag.answering import answer
from rag.chunking import chunk_document
from rag.corpus import MAX_FILE_BYTES, load_corpus, load_file
from rag.retrieval import retrieve
from rag.store import build_index, build_lock, load_index, manifest_checksum

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

TESTS = Path(__file__).resolve().parent
# The rules alone (the trained reader is tested elsewhere); the fake model's similarities are low: never abstain.
PLUMBING = Config(reader="heuristic", abstain_threshold=-1.0)
EVIL = '<script>alert("x")</script><img src=x onerror="window.__xss=1">'

ARTICLES = {
    "gipfel.txt": "Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden. Beide sprachen über die Ukraine.",
    "wetter.txt": "In Wien regnete es am Dienstag den ganzen Tag. Die Temperaturen lagen bei fünf Grad.",
    "fussball.txt": "Rapid Wien gewann das Derby mit drei zu eins. Die Fans feierten bis in die Nacht.",
}
QUESTIONS = ["Wie lange dauerte der Videogipfel?", "Derby Rapid Wien", "Regen in Wien am Dienstag", "Temperaturen Grad"]


def write_corpus(root: Path, articles: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in articles.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return root


def signature(idx, questions=QUESTIONS) -> tuple:
    """What an index version answers, independent of how its chunk ids were assigned: its articles
    and chunk spans, and per question and ranking the top scores and the best passage when it is
    unique (equal scores may come in any order)."""
    docs = tuple(sorted((d.id, d.content_hash) for d in idx.documents.values()))
    spans = tuple(sorted((c.doc_id, c.start, c.end) for c in idx.chunks.values()))
    hits = []
    for q in questions:
        for mode in ("dense", "bm25"):
            ps = retrieve(idx, q, k=5, mode=mode)
            scores = tuple(round(p.score, 5) for p in ps)
            best = (ps[0].doc_id, ps[0].start, ps[0].end) if len(ps) == 1 or (ps and scores[0] > scores[1]) else None
            hits.append((scores, best))
    return docs, spans, tuple(hits)


def assert_consistent(idx, passages) -> None:
    for p in passages:
        doc = idx.documents[p.doc_id]
        assert doc.text[p.start : p.end] == p.text
        if p.highlight:
            assert 0 <= p.highlight[0] <= p.highlight[1] <= len(p.text)


def one_line_rag_error(exc: BaseException) -> str:
    msg = str(exc)
    assert isinstance(exc, RagError) and "\n" not in msg and "rag build" in msg, msg
    return msg


@pytest.fixture(scope="module")
def fake_idx(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel-index")
    corpus = write_corpus(root / "corpus", ARTICLES)
    build_index(corpus, root / "idx", embedder=FakeEmbedder())
    return load_index(root / "idx", PLUMBING, embedder=FakeEmbedder())


# ================================================================ corpus input


GOOD_A = "Der Bürgermeister von Kleinstadt eröffnete am Montag die neue Brücke über den Inn."
GOOD_B = "# Hafen\n\nIm Hamburger Hafen legte am Freitag das größte Containerschiff der Welt an."


def test_one_build_over_every_kind_of_bad_file(tmp_path):
    root = tmp_path / "korpus"
    outside = write_corpus(tmp_path / "draussen", {"geheim.txt": "Geheimes Passwort Zebra neun."})
    para = "Der Stadtrat beriet am Montag über den Haushalt und die Sanierung der Schulen.\n\n"
    deep_folder = "/".join(f"ebene{i:02d}" for i in range(60))
    write_corpus(root, {
        "gut_a.txt": GOOD_A,
        "gut_b.md": GOOD_B,
        "leer.txt": "",
        "leerzeichen.md": " \n\t\r\n   \n",
        "binaer.txt": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "nullbytes.txt": b"Text\x00mit\x00Nullen" * 50,
        "latin1.txt": "Die Straße in München war überfüllt, sagte Jürgen Weiß.".encode("latin-1"),
        "cp1252.txt": "„Zitat“ – Größere Änderungen folgen bald, sagte die Ärztin.".encode("cp1252"),
        "kopie.txt": GOOD_A,  # a duplicate of gut_a
        "skript.html": (
            "<html><head><title>Feuerwehr</title><script>window.boese = 'Skriptinhalt';</script>"
            "<style>p { color: red }</style></head><body><p>Die Feuerwehr löschte am Sonntag einen Brand in der Altstadt.</p>"
            "<script>document.write('Skriptinhalt')</script></body></html>"
        ),
        "gross.txt": para * (5 * 1024 * 1024 // len(para.encode()) + 1),  # 5 MB+, indexed
        f"{deep_folder}/tief.txt": "Ganz unten im Ordnerbaum: Die Wahl des Bürgermeisters fand am Sonntag statt.",
        "tief.html": "<html><body>" + "<div>" * 2000 + "<p>Tief verschachtelt: Der Zoo begrüßte ein Elefantenbaby.</p>"
                     + "</div>" * 2000 + "</body></html>",
        "yaml.md": "---\ntitle: !!python/object/apply:os.system ['touch " + str(tmp_path / "PWNED") + "']\n---\n"
                   "Der Text über die Gemeinderatswahl.\n",
    })
    with open(root / "riesig.txt", "wb") as f:  # sparse: over the size limit without writing 20 MB
        f.truncate(MAX_FILE_BYTES + 1)
    os.symlink(outside / "geheim.txt", root / "verweis.txt")
    os.symlink(outside, root / "verweisordner")

    idx = build_index(root, tmp_path / "idx", embedder=FakeEmbedder())
    warnings = idx.last_build.warnings
    assert all("\n" not in w for w in warnings)

    def warned(name, reason=""):
        hits = [w for w in warnings if w.endswith(": " + name) and reason in w]
        assert hits, (name, reason, warnings)

    for name, reason in [("leer.txt", "leer"), ("leerzeichen.md", "leer"), ("binaer.txt", "Binärdatei"),
                         ("nullbytes.txt", "Binärdatei"), ("latin1.txt", "cp1252"), ("cp1252.txt", "cp1252"),
                         ("kopie.txt", "Duplikat"), ("riesig.txt", "zu groß"), ("tief.html", "verschachtelt"),
                         ("yaml.md", "Front Matter"), ("verweis.txt", "außerhalb"), ("verweisordner", "außerhalb")]:
        warned(name, reason)
    docs = idx.documents
    assert {"gut_a", "gut_b", "latin1", "cp1252", "skript", "gross", f"{deep_folder}/tief", "tief", "yaml"} == set(docs)
    # Nothing from outside the corpus, nothing from scripts, nothing executed.
    all_text = "\n".join(d.text + d.title for d in docs.values())
    assert "Zebra" not in all_text and "Skriptinhalt" not in all_text and "color" not in all_text
    assert not (tmp_path / "PWNED").exists()
    assert docs["latin1"].text.startswith("Die Straße in München") and "„Zitat“" in docs["cp1252"].text
    assert len(docs["gross"].text.encode()) > 5 * 1024 * 1024
    # The good articles (and the repaired ones) are searchable.
    loaded = load_index(tmp_path / "idx", embedder=FakeEmbedder())
    for question, doc_id in [("Brücke über den Inn Bürgermeister Kleinstadt", "gut_a"),
                             ("Containerschiff Hamburger Hafen", "gut_b"),
                             ("Elefantenbaby Zoo", "tief"),
                             ("Feuerwehr Brand Altstadt", "skript"),
                             ("Wahl des Bürgermeisters Ordnerbaum", f"{deep_folder}/tief")]:
        hits = retrieve(loaded, question, k=1, mode="bm25")
        assert hits and hits[0].doc_id == doc_id, (question, hits)
        assert_consistent(loaded, hits)


# ================================================================ questions


HOSTILE_QUESTIONS = {
    "empty": "",
    "blank": " \n\t ",
    "controls_only": "\x00\x01\x02\x1b\x7f",
    "lone_surrogate": "\ud800",
    "10k": ("Wie lange dauerte der Videogipfel? " * 300)[:10_000],
    "10k_one_word": "ä" * 10_000,
    "emoji": "😀🎉🇩🇪👍🏽",
    "controls": "Wie\x00 lange\x1b[31m dauerte\r der\x7f Gipfel?\u202e\u200b",
    "sql": "'; DROP TABLE chunks; -- \" OR 1=1; SELECT * FROM documents",
    "html": EVIL + " Wie lange dauerte der Gipfel?",
    "format": "%s%n{0}${x}{{}}\\x00",
}


@pytest.mark.parametrize("name", list(HOSTILE_QUESTIONS))
def test_hostile_questions_are_answered_or_rejected_clearly(fake_idx, name):
    question = HOSTILE_QUESTIONS[name]
    db = fake_idx.version_dir / "chunks.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    for mode in ("hybrid", "dense", "bm25"):
        for call in (answer, retrieve):
            try:
                result = call(fake_idx, question, mode=mode)
            except RagError as e:
                assert name in ("empty", "blank", "controls_only", "lone_surrogate"), (name, e)
                assert isinstance(e, QuestionError) and "\n" not in str(e)
                continue
            assert name not in ("empty", "blank", "controls_only", "lone_surrogate")
            passages = result.passages if hasattr(result, "passages") else result
            assert_consistent(fake_idx, passages)
            if hasattr(result, "question"):
                assert len(result.question) <= fake_idx.config.max_question_chars
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and len(fake_idx.documents) == 3


def test_article_whose_text_is_its_own_id_can_be_quoted(tmp_path):
    # Regression: answer.py's per-article sentence cache and Index's sentence-vector cache shared
    # one dict, so an article "Wahl.txt" containing just "Wahl" crashed every question (ValueError).
    corpus = write_corpus(tmp_path / "corpus", {"Wahl.txt": "Wahl", "b.txt": "Die Wahl in Wien fand am Sonntag statt."})
    build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    idx = load_index(tmp_path / "idx", PLUMBING, embedder=FakeEmbedder())
    for question in ("Wahl", "Wahl in Wien", "Wahl"):
        ans = answer(idx, question, k=2)
        assert {p.doc_id for p in ans.passages} == {"Wahl", "b"}
        assert_consistent(idx, ans.passages)


def test_html_in_questions_and_articles_is_escaped_in_the_ui(tmp_path):
    from ui import render
    from ui.app import UIService

    corpus = write_corpus(tmp_path / "corpus", {
        "boese.txt": f"Der Gipfel dauerte rund zwei Stunden. {EVIL} Danach sprach Biden.",
        # Escaped markup in an HTML page is *text* after parsing: it must stay text in the UI.
        "seite.html": "<html><head><title>&lt;script&gt;alert(2)&lt;/script&gt;</title></head><body>"
                      "<p>Der Gipfel in Genf dauerte drei Stunden &lt;img src=x onerror=alert(3)&gt; laut Agentur.</p></body></html>",
    })
    svc = UIService(tmp_path / "idx", corpus, PLUMBING, embedder=FakeEmbedder())
    assert "<img src=x onerror=alert(3)>" in svc.index.documents["seite"].text
    ans, hashes = svc.answer_with_hashes(EVIL + " Wie lange dauerte der Gipfel?", k=2)
    assert {p.doc_id for p in ans.passages} == {"boese", "seite"}
    page = render.render_turn(EVIL, render.render_answer_body(ans, hashes), "t1")
    page += render.render_log([page]) + render.render_error(str(QuestionError(EVIL)))
    for p in ans.passages:
        page += svc.article_html(render.open_payload(p.to_dict(), hashes[p.doc_id]))
    page += svc.article_html({"doc": "seite"}) + svc.article_html({"doc": EVIL})
    lowered = page.lower()
    assert "<script" not in lowered and "<img" not in lowered and "onerror=\"" not in lowered
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=alert(3)&gt;" in page


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(question=st.one_of(st.text(max_size=300), st.text(st.characters(codec="utf-8"), min_size=1, max_size=50),
                          st.lists(st.sampled_from(["Wie", "lange", "Gipfel", "Wien", "?", "<b>", "'", ";", "\x00", "😀", " ", "\n", "ß"]),
                                   max_size=20).map("".join)),
       mode=st.sampled_from(["hybrid", "dense", "bm25"]))
def test_fuzz_questions_only_rag_errors_and_consistent_offsets(fake_idx, question, mode):
    for call in (answer, retrieve):
        try:
            result = call(fake_idx, question, mode=mode)
        except RagError:
            continue
        assert_consistent(fake_idx, result.passages if hasattr(result, "passages") else result)


# ================================================================ crashes


def _child_main(conn, index: str, stop_at: int, hold_lock: bool) -> None:
    """A build process: builds the corpus it is sent and reports its steps through `conn`.

    From `_write_files` on, every fsync, rename, replace and folder removal is a step of the write
    phase. With `stop_at` = n the process stops before step n, reports ("stopped", step name) and
    waits to be killed; with -1 it runs through and reports the step names with "done". With
    `hold_lock` it reports "locked" once it holds the build lock and waits for a message before
    it goes on."""
    import contextlib
    import shutil

    import rag.store as store

    steps: list[str] = []
    writing = False

    def step(fn, name):
        def wrapper(*a, **k):
            if writing:
                if len(steps) == stop_at:
                    conn.send(("stopped", name))
                    conn.recv()  # never comes: the test kills this process here
                steps.append(name)
            return fn(*a, **k)
        return wrapper

    real_write = store._write_manifest

    def write_files(*a, **k):
        nonlocal writing
        writing = True
        conn.send(("write", None))
        return real_write(*a, **k)

    real_lock = store.build_lock

    @contextlib.contextmanager
    def lock(*a, **k):
        conn.send(("locking", None))
        with real_lock(*a, **k):
            conn.send(("locked", None))
            if hold_lock:
                conn.recv()
            try:
                yield
            finally:
                conn.send(("unlocked", None))

    os.fsync = step(os.fsync, "fsync")
    os.rename = step(os.rename, "rename")
    os.replace = step(os.replace, "replace")
    shutil.rmtree = step(shutil.rmtree, "rmtree")
    store._write_manifest = write_files
    store.build_lock = lock
    conn.send(("ready", None))
    corpus = conn.recv()
    store.build_index(corpus, index, embedder=FakeEmbedder())
    conn.send(("done", steps))


_MP = None


def _mp():
    """Build processes are forked from a fork server that has imported everything once (a fresh
    interpreter per process would cost a second each; forking the test process itself is unsafe
    once it has threads)."""
    global _MP
    if _MP is None:
        import multiprocessing

        _MP = multiprocessing.get_context("forkserver")
        _MP.set_forkserver_preload(["rag.store", "faiss", "bm25s", "Stemmer", "numpy", "fakes", __name__])
    return _MP


class Child:
    """A separate build process on `index` that waits for the corpus to build (see `_child_main`)."""

    def __init__(self, index: Path, stop_at: int = -1, hold_lock: bool = False):
        ctx = _mp()
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(target=_child_main, args=(child_conn, str(index), stop_at, hold_lock), daemon=True)
        self.proc.start()
        child_conn.close()
        self.events: list[tuple[str, object]] = []

    @property
    def seen(self) -> list[str]:
        return [tag for tag, _ in self.events]

    def reports(self, tag: str, within: float):
        """Read events until `tag` (→ True) or until `within` seconds passed without it (→ False)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            if not self.conn.poll(left):
                break
            try:
                event = self.conn.recv()
            except EOFError:
                raise AssertionError(f"build process ended before {tag!r}: {self.events}") from None
            self.events.append(event)
            if event[0] == tag:
                return True
        return False

    def wait_for(self, tag: str):
        """The detail of the next `tag` event."""
        if not self.reports(tag, 60):
            raise AssertionError(f"no {tag!r} from the build process: {self.events}")
        return self.events[-1][1]

    def go(self, corpus: Path) -> None:
        if "ready" not in self.seen:
            self.wait_for("ready")
        self.conn.send(str(corpus))

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)
        assert not self.proc.is_alive()

    def finish(self) -> int:
        self.wait_for("done")
        self.proc.join(30)
        assert not self.proc.is_alive()
        return self.proc.exitcode


def _two_corpora(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Corpus A (40 articles of random words) and B (5 removed, 5 changed, 5 added)."""
    rng = random.Random(7)
    words = [f"{rng.choice('bdfgklmnprst')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{i}" for i in range(3000)]

    def article(seed: int) -> str:  # Markdown with a heading: the title needs no sentence splitting
        r = random.Random(seed)
        return f"# Artikel {seed}\n\n" + "\n\n".join(" ".join(r.sample(words, 12)).capitalize() + "." for _ in range(25))

    a = {f"a{i:02d}.md": article(i) for i in range(40)}
    b = {k: v for k, v in a.items() if k not in {f"a{i:02d}.md" for i in range(5)}}
    b.update({f"a{i:02d}.md": article(1000 + i) for i in range(5, 10)})
    b.update({f"b{i:02d}.md": article(2000 + i) for i in range(5)})
    questions = [" ".join(article(s).split()[3:9]) for s in (3, 7, 1007, 2001, 30)]
    return write_corpus(tmp_path / "A", a), write_corpus(tmp_path / "B", b), questions


def test_kill_during_write_and_switch_phase_keeps_old_or_new_version(tmp_path):
    """SIGKILL before chosen steps of the write phase (the version's files, its rename, the CURRENT
    swap and after it), on one index, each build toggling between two corpora: every time the
    index loads and answers exactly like the old version when the kill came before the swap of
    CURRENT, and exactly like the new one after it."""
    corpus_a, corpus_b, questions = _two_corpora(tmp_path)
    root = tmp_path / "idx"
    ref = {"A": signature(build_index(corpus_a, root, embedder=FakeEmbedder()), questions)}
    # One build A → B that runs through names the steps of the write phase.
    child = Child(root)
    child.go(corpus_b)
    assert child.finish() == 0
    steps = dict(child.events)["done"]
    ref["B"] = signature(load_index(root, embedder=FakeEmbedder()), questions)
    assert ref["A"] != ref["B"]
    assert steps.count("rename") == 1 and steps.count("replace") == 1, steps
    renamed, swapped = steps.index("rename"), steps.index("replace")  # the version folder; CURRENT
    # The first step, both sides of the rename and of the swap, and steps in between.
    kills = sorted({0, renamed // 2, renamed, renamed + 1, (renamed + swapped) // 2, swapped - 1, swapped, swapped + 1})
    state = "B"
    for n in kills:
        target = "A" if state == "B" else "B"
        child = Child(root, stop_at=n)
        child.go(corpus_a if target == "A" else corpus_b)
        name = child.wait_for("stopped")
        child.kill()
        got = signature(load_index(root, embedder=FakeEmbedder()), questions)
        expected = target if n > swapped else state
        assert got == ref[expected], f"killed before step {n} ({name}) of {steps}: not the {'new' if n > swapped else 'old'} version"
        state = expected
    # The next build clears what the killed ones left behind.
    final = build_index(corpus_a, root, embedder=FakeEmbedder())
    assert signature(final, questions) == ref["A"]
    assert not list(root.glob(".tmp-*")) and not list(root.glob(".CURRENT.*")) and len(list(root.glob("v-*"))) <= 2


def test_two_build_processes_serialise_on_the_lock(tmp_path):
    corpus_a, corpus_b, questions = _two_corpora(tmp_path)
    root = tmp_path / "idx"
    build_index(corpus_a, root, embedder=FakeEmbedder())
    first, second = Child(root, hold_lock=True), Child(root)
    first.go(corpus_b)
    first.wait_for("locked")  # the first holds the lock until it is told to go on
    second.go(corpus_a)
    second.wait_for("locking")
    with pytest.raises(IndexLockedError):  # nobody else gets it meanwhile: not this process …
        with build_lock(root, timeout=0):
            pass
    assert not second.reports("locked", within=1.0), second.events  # … nor the second build
    first.conn.send("go on")
    assert first.finish() == 0
    assert second.finish() == 0 and "locked" in second.seen  # it got the lock once it was free
    ref_root = tmp_path / "ref"
    build_index(corpus_a, ref_root, embedder=FakeEmbedder())  # the second build, A, came last
    idx = load_index(root, embedder=FakeEmbedder())
    assert idx.faiss.ntotal == len(idx.chunks)
    assert signature(idx, questions) == signature(load_index(ref_root, embedder=FakeEmbedder()), questions)


def test_upsert_and_delete_wait_for_a_running_build(tmp_path):
    from rag.corpus import Document

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    held, release, order, result = threading.Event(), threading.Event(), [], {}

    def other_writer():
        with build_lock(tmp_path / "idx"):
            held.set()
            release.wait(60)
            order.append("other writer done")

    def upsert():
        doc = Document(id="neu", text="Die ÖBB kündigten einen Streik an.", title="Streik", date=None, source="neu.txt")
        result["bigger"] = idx.upsert([doc])
        order.append("upsert done")

    writer, upserter = threading.Thread(target=other_writer), threading.Thread(target=upsert)
    writer.start()
    assert held.wait(10)
    upserter.start()
    upserter.join(1.0)
    assert upserter.is_alive()  # it waits for the lock …
    release.set()
    for t in (writer, upserter):
        t.join(30)
        assert not t.is_alive()
    assert order == ["other writer done", "upsert done"]  # … and goes on once it is free
    bigger = result["bigger"]
    smaller = bigger.delete(["neu"])
    assert "neu" in bigger.documents and "neu" not in smaller.documents
    assert load_index(tmp_path / "idx", embedder=FakeEmbedder()).version_dir == smaller.version_dir


# ================================================================ corruption


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _sub_bytes(path: Path, pattern: bytes, repl: bytes) -> None:
    import re

    data, n = re.subn(pattern, repl, path.read_bytes(), count=1)
    assert n == 1
    path.write_bytes(data)


def _edit_manifest(version: Path, change) -> None:
    m = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    change(m)
    m["checksum"] = manifest_checksum(m)  # a well-formed manifest, only its content is wrong
    (version / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


DAMAGE = {
    "faiss_byte": (lambda root, v: _flip_middle(v / "faiss.index"), "faiss.index"),
    "sqlite_byte": (lambda root, v: _flip_middle(v / "chunks.sqlite"), "chunks.sqlite"),
    "bm25_vocab_byte": (lambda root, v: _flip_middle(v / "bm25" / "vocab.index.json"), "bm25"),
    "bm25_data_byte": (lambda root, v: _flip_middle(v / "bm25" / "data.csc.index.npy"), "bm25"),
    "bm25_ids_byte": (lambda root, v: _flip_middle(v / "bm25" / "chunk_ids.npy"), "bm25"),
    "bm25_file_missing": (lambda root, v: (v / "bm25" / "params.index.json").unlink(), "bm25"),
    "manifest_byte": (lambda root, v: _flip_middle(v / "manifest.json"), "manifest"),
    "manifest_key_missing": (lambda root, v: _edit_manifest(v, lambda m: m.pop("model")), "manifest"),
    # Valid JSON, right types, only a number changed: caught by the manifest's own checksum
    # (else the next incremental build would hand out chunk ids that are already taken).
    "manifest_value_altered": (
        lambda root, v: _sub_bytes(v / "manifest.json", rb'"next_chunk_id": \d+', rb'"next_chunk_id": 1'), "manifest"),
    "manifest_not_object": (lambda root, v: (v / "manifest.json").write_text("[1, 2]"), "manifest"),
    "other_model": (lambda root, v: _edit_manifest(v, lambda m: m["model"].update(fingerprint="andere@1")), "Modell"),
    "other_format": (lambda root, v: _edit_manifest(v, lambda m: m.update(format_version=999)), "Format"),
    "current_missing_folder": (lambda root, v: (root / "CURRENT").write_text("v-1-gone"), "manifest"),
    "current_garbage_bytes": (lambda root, v: (root / "CURRENT").write_bytes(b"\xff\xfe\x00\x9c" * 100), "CURRENT"),
    "current_overlong": (lambda root, v: (root / "CURRENT").write_text("v-" + "a" * 5000), "CURRENT"),
    "current_garbage_text": (lambda root, v: (root / "CURRENT").write_text("../../etc\nv-x"), "CURRENT"),
    "version_folder_gone": (lambda root, v: shutil.rmtree(v), "manifest"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A built index and its reference answers, copied for each damage."""
    base = tmp_path_factory.mktemp("pristine")
    corpus = write_corpus(base / "corpus", ARTICLES)
    build_index(corpus, base / "idx", embedder=FakeEmbedder())
    return corpus, base / "idx", signature(load_index(base / "idx", embedder=FakeEmbedder()))


@pytest.fixture
def fake_model(monkeypatch):
    """The CLI loads the real model; give it the fake one (same fingerprint as the fixtures)."""
    import rag.embedding

    fake = FakeEmbedder()
    monkeypatch.setattr(rag.embedding, "load_embedder", lambda config=None: fake)
    monkeypatch.setattr(rag.embedding, "model_fingerprint", lambda config: fake.fingerprint)
    return fake


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupt_index_gives_one_line_error_and_rag_build_repairs(pristine, tmp_path, fake_model, damage):
    from typer.testing import CliRunner

    from rag.cli import app

    corpus, original, expected = pristine
    root = tmp_path / "idx"
    shutil.copytree(original, root)
    version = root / (root / "CURRENT").read_text().strip()
    harm, what = DAMAGE[damage]
    harm(root, version)
    with pytest.raises(IndexCorruptError) as err:
        load_index(root, embedder=FakeEmbedder())
    assert what in one_line_rag_error(err.value)
    runner = CliRunner()
    asked = runner.invoke(app, ["ask", "Wie lange dauerte der Videogipfel?", "--index", str(root), "--corpus", str(corpus)])
    assert asked.exit_code == 2, (asked.output, asked.exception)
    assert asked.stderr.count("\n") == 1 and "rag build" in asked.stderr, asked.stderr
    built = runner.invoke(app, ["build", "--corpus", str(corpus), "--index", str(root)])
    assert built.exit_code == 0, (built.output, built.exception)
    assert "3 Artikel" in built.stdout
    repaired = load_index(root, embedder=FakeEmbedder())
    assert signature(repaired) == expected
    asked = runner.invoke(app, ["ask", "Derby Rapid Wien", "--index", str(root), "--corpus", str(corpus), "--json", "--mode", "bm25"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["question"] == "Derby Rapid Wien"


def test_leftovers_of_killed_builds_are_removed_even_by_a_build_without_changes(pristine, tmp_path):
    corpus, original, expected = pristine
    root = tmp_path / "idx"
    shutil.copytree(original, root)
    current = root / (root / "CURRENT").read_text().strip()
    stamp = int(current.name.split("-")[1])
    older = root / f"v-{stamp - 2}-aaaaaa"  # the predecessor: kept for readers still opening it
    oldest = root / f"v-{stamp - 5}-bbbbbb"
    orphan = root / f"v-{stamp + 7}-cccccc"  # renamed by a build killed before it switched CURRENT
    for p in (older, oldest, orphan):
        shutil.copytree(current, p)
    (root / ".tmp-0123").mkdir()
    (root / ".CURRENT.0123").write_text("v-1")
    idx = build_index(corpus, root, embedder=FakeEmbedder())
    assert not idx.last_build.wrote  # nothing changed ...
    assert sorted(p.name for p in root.iterdir() if p.name.startswith((".tmp", ".CURRENT", "v-"))) == sorted([older.name, current.name])
    assert signature(load_index(root, embedder=FakeEmbedder())) == expected


def test_stray_folders_in_the_index_do_not_break_builds(pristine, tmp_path):
    corpus, original, expected = pristine
    root = tmp_path / "idx"
    shutil.copytree(original, root)
    (root / "v-sicherung").mkdir()  # a folder with a version-like name that is no version
    corpus2 = write_corpus(tmp_path / "corpus2", {**ARTICLES, "neu.txt": "Die ÖBB kündigten einen Streik an."})
    idx = build_index(corpus2, root, embedder=FakeEmbedder())
    assert "neu" in idx.documents and len(list(root.glob("v-*"))) <= 2


# ================================================================ concurrency and memory


def test_twenty_clients_are_answered_correctly_during_rebuilds(tmp_path):
    from ui import render
    from ui.app import UIService

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    svc = UIService(tmp_path / "idx", corpus, PLUMBING, embedder=FakeEmbedder())
    expected = {"Derby Rapid Wien drei zu eins": "fussball", "Videogipfel Biden Putin zwei Stunden": "gipfel",
                "Wien regnete Dienstag Temperaturen": "wetter"}
    errors: list[BaseException] = []
    answered = []
    stop = threading.Event()
    swaps = []
    more_answers = threading.Condition()

    def client(n: int) -> None:
        try:
            i = 0
            while not stop.is_set() or i < 3:
                question = list(expected)[(n + i) % 3]
                mode = ("hybrid", "bm25", "dense")[(n + i) % 3]
                idx_before = svc.index
                ans, hashes = svc.answer_with_hashes(question, k=2, mode=mode)
                assert ans.passages and set(hashes) == {p.doc_id for p in ans.passages}
                top = ans.passages[0]
                if mode != "dense":  # the fake model's dense ranking is no quality claim
                    assert top.doc_id == expected[question], (question, mode, ans.passages)
                for idx in {id(idx_before): idx_before, id(svc.index): svc.index}.values():
                    if all(p.doc_id in idx.documents and idx.documents[p.doc_id].text[p.start : p.end] == p.text for p in ans.passages):
                        break
                else:
                    raise AssertionError("passages match no index version")
                assert "<mark>" in render.render_answer_body(ans, hashes)
                with more_answers:
                    answered.append(n)
                    more_answers.notify_all()
                i += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    waited: list[bool] = []  # per rebuild: did the clients get 20 answers while it waited?

    def answers_during_the_build(frac: float, msg: str) -> None:
        """A slow build (it waits at its first step after embedding) that does not hold the shared
        model meanwhile: it goes on once the clients have got 20 more answers."""
        if frac >= 0.9 and len(waited) < len(swaps) + 1:
            mark = len(answered)
            with more_answers:
                waited.append(more_answers.wait_for(lambda: len(answered) >= mark + 20 or bool(errors), timeout=60))
            assert waited[-1], "no answers during the rebuild"

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    try:
        for i in range(3):  # rebuild and swap while the clients ask
            new = corpus / "neu.txt"
            text = f"Die Nato verlegte {i} Truppen nach Polen."
            change = functools.partial(new.write_text, text, encoding="utf-8") if i % 2 == 0 else new.unlink
            idx = svc.rebuild(progress=answers_during_the_build, change=change)
            swaps.append(idx)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert waited == [True, True, True]
    assert len(set(answered)) == 20 and len(answered) >= 60
    assert len({id(s) for s in swaps}) == 3 and svc.index is swaps[-1] and "neu" in swaps[-1].documents


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def test_memory_stays_bounded_over_repeated_questions(fake_idx):
    import gc

    for i in range(20):
        answer(fake_idx, f"Wie lange dauerte der Videogipfel {i}?")
    gc.collect()
    before = _rss_mb()
    for i in range(200):
        answer(fake_idx, f"Wie lange dauerte der Gipfel Nummer {i} in Wien?", mode=("hybrid", "bm25", "dense")[i % 3])
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 40, f"RSS grew by {grown:.1f} MB over 200 questions"
    for i in range(1000):
        fake_idx.query_vector(f"Frage {i}")
    assert fake_idx.cache_sizes()["queries"] <= 256


def test_sentence_vector_cache_is_bounded(tmp_path, monkeypatch):
    import rag.store

    corpus_a, _, _ = _two_corpora(tmp_path)
    build_index(corpus_a, tmp_path / "idx", embedder=FakeEmbedder())
    fake = FakeEmbedder()
    monkeypatch.setattr(rag.store, "SENTENCE_CACHE", 50)
    idx = load_index(tmp_path / "idx", PLUMBING, embedder=fake)
    words = sorted({w for d in idx.documents.values() for w in d.text.split()[3:]})
    largest = 0
    for i in range(40):
        answer(idx, " ".join(words[i * 7 : i * 7 + 4]))
        largest = max(largest, idx.cache_sizes()["sentence_vectors"])
    assert fake.embedded > 200  # far more sentences went through the cache than it may hold
    assert largest <= 50 + 100  # the limit plus one answer's candidate sentences


# ================================================================ web


def _listening(port: int) -> set[str]:
    """The local addresses on which a socket of this machine listens on TCP `port` (Linux)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # words in host order
                found.add(socket.inet_ntop(family, raw))
    return found


def test_server_binds_localhost_by_default(tmp_path, monkeypatch):
    from urllib.parse import urlsplit

    from typer.testing import CliRunner

    from rag.cli import app
    from ui.app import create_app, launch_app

    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp")
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    demo = create_app(tmp_path / "idx", corpus, config=PLUMBING, embedder=FakeEmbedder(), examples=[])
    _, url, _ = launch_app(demo, port=None, block=False, quiet=True)  # no host given; the server takes a free port
    try:
        assert _listening(urlsplit(url).port) == {"127.0.0.1"}
    finally:
        demo.close()
    # `rag serve` without options asks for exactly that: localhost, no login.
    seen = {}
    monkeypatch.setattr("ui.app.serve", lambda *a, **k: seen.update(k))
    res = CliRunner().invoke(app, ["serve"])
    assert res.exit_code == 0, res.output
    assert seen["host"] == "127.0.0.1" and seen["auth"] is None


def _other_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_login_required_when_auth_is_set_and_only_localhost_listens(tmp_path):
    import httpx

    from ui.app import create_app, launch_app, parse_auth

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    demo = create_app(tmp_path / "idx", corpus, config=PLUMBING, embedder=FakeEmbedder(), auth=parse_auth("anna:geheim"), examples=[])
    _, url, _ = launch_app(demo, port=None, block=False, quiet=True)  # the server takes a free port
    try:
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=10) as anon:
            for path in ("config", "gradio_api/info"):
                assert anon.get(path).status_code == 401
            r = anon.post("gradio_api/call/answer", json={"data": ["Wie lange dauerte der Videogipfel?", 3, "hybrid"]})
            assert r.status_code == 401
            assert anon.post("gradio_api/upload", files={"files": ("x.txt", b"Text")}).status_code == 401
            assert anon.post("login", data={"username": "anna", "password": "falsch"}).status_code >= 400
        with httpx.Client(base_url=url, timeout=10) as user:
            assert user.post("login", data={"username": "anna", "password": "geheim"}).status_code == 200
            assert user.get("config").status_code == 200
            # Uploads over the limit are refused by the server; corpus files are never served raw.
            big = user.post("gradio_api/upload", files={"files": ("gross.txt", b"a" * (5 * 1024 * 1024 + 1))})
            assert big.status_code == 413
            assert user.get(f"gradio_api/file={corpus / 'gipfel.txt'}").status_code in (403, 404)
            assert user.get("gradio_api/file=/etc/passwd").status_code in (403, 404)
        other = _other_address()
        if other:
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
    finally:
        demo.close()


def test_uploads_never_write_through_symlinks_or_onto_folders(tmp_path):
    from ui.files import UploadError, save_upload

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    outside = tmp_path / "draussen.txt"
    outside.write_text("unverändert", encoding="utf-8")
    os.symlink(outside, corpus / "ziel.txt")
    (corpus / "ordner.txt").mkdir()
    src = tmp_path / "upload.txt"
    src.write_text("Der Gemeinderat beschloss am Montag den Haushalt.", encoding="utf-8")
    for name in ("ziel.txt", "ordner.txt"):
        with pytest.raises(UploadError):
            save_upload(src, corpus, name=name, overwrite=True)
    assert outside.read_text(encoding="utf-8") == "unverändert"
    assert sorted(p.name for p in corpus.iterdir()) == ["ordner.txt", "ziel.txt"]


_NAME_PARTS = ["..", "/", "\\", ".", "a", "ä", " ", "~", "C:", ".txt", ".md", "\x00", "%2e"]


@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=40) | st.lists(st.sampled_from(_NAME_PARTS), max_size=8).map("".join))
def test_fuzz_upload_names_stay_inside_the_corpus(tmp_path_factory, name):
    from ui.files import ALLOWED_SUFFIXES, UploadError, sanitize_filename

    try:
        safe = sanitize_filename(name)
    except UploadError:
        return
    corpus = tmp_path_factory.getbasetemp() / "names"
    assert "/" not in safe and "\\" not in safe and ".." not in safe and not safe.startswith(".")
    assert Path(safe).suffix in ALLOWED_SUFFIXES and (corpus / safe).resolve().parent == corpus.resolve()


def test_article_viewer_serves_only_indexed_articles_for_any_payload(tmp_path):
    from ui.app import UIService

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    (tmp_path / "geheim.txt").write_text("Geheimes Passwort Zebra.", encoding="utf-8")
    svc = UIService(tmp_path / "idx", corpus, PLUMBING, embedder=FakeEmbedder())
    gipfel = svc.index.documents["gipfel"]
    payloads = [
        None, 0, [], "", "null", "[" * 100_000, '{"doc": 1}', {"doc": None}, {"doc": ["gipfel"]},
        {"doc": "../geheim"}, {"doc": str(tmp_path / "geheim")}, {"doc": "gipfel.txt"}, {"doc": "/etc/passwd"},
        {"doc": "gipfel", "start": 1e999, "end": 5}, '{"doc": "gipfel", "start": 1e999, "end": 2e999}',
        {"doc": "gipfel", "start": float("nan"), "end": 5}, {"doc": "gipfel", "start": -5, "end": 10 ** 30},
        {"doc": "gipfel", "start": "0", "end": "x"}, {"doc": "gipfel", "hl": {"a": 1}}, {"doc": "gipfel", "hl": "ab"},
        {"doc": "gipfel", "hl": [3]}, {"doc": "gipfel", "start": 5, "end": 2}, {"doc": "gipfel", "hash": EVIL},
    ]
    for payload in payloads:
        out = svc.article_html(payload)
        assert isinstance(out, str) and "Zebra" not in out and "root:" not in out
        if "rag-article" in out:
            assert render_text(out).count(gipfel.text) == 1
    assert svc.article_html({"doc": "gipfel", "start": 0, "end": 3}).count("rag-inquote") == 1


def render_text(html_out: str) -> str:
    import re

    return _html.unescape(re.sub(r"<[^>]+>", "", html_out))


# ================================================================ loader fuzz


_FRAGMENTS = ["<html>", "<body>", "<p>", "</p>", "<script>x()</script>", "<div>" * 300, "Der Gipfel dauerte zwei Stunden.", "---\n",
              "title: x\n", "id: \n", '{"text": "Ein Artikel."}\n', '{"id": 5, "text": 7}\n', "{", "date 2021-12\n", "Datum: 07.12.2021\n",
              "\r\n", "\x00", "ä", "\ufeff", "# ", " ", "\n\n", "&lt;b&gt;", "\u0301"]
_BYTES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.text(max_size=200).map(lambda s: s.encode("cp1252", "ignore")),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=25).map(lambda parts: "".join(parts).encode("utf-8")),
)
_STEMS = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=25)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=_BYTES, stem=_STEMS, ext=st.sampled_from([".txt", ".md", ".html", ".htm", ".jsonl", ".TXT", ".Md"]))
def test_fuzz_loader_only_corpus_errors_and_consistent_offsets(tmp_path_factory, data, stem, ext):
    root = Path(os.path.realpath(tmp_path_factory.mktemp("fuzz")))
    path = root / (stem + ext)
    try:
        path.write_bytes(data)
    except OSError:  # a name the file system refuses (too long in bytes)
        return
    try:
        docs = load_file(path, root)
    except CorpusError as e:
        assert len(str(e).splitlines()) == 1
        docs = []
    load = load_corpus(root)  # never raises for a file
    assert all(len(w.splitlines()) == 1 for w in load.warnings)
    for doc in [*docs, *load.documents]:
        assert doc.text and doc.text == doc.text.strip()
        for ch in chunk_document(doc):
            assert doc.text[ch.start : ch.end] == ch.text
    shutil.rmtree(root)
