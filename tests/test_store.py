"""Store plumbing with a tiny fake embedder: incremental builds, crash safety, corruption handling."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from fakes import FakeEmbedder
from rag import Config, IndexCorruptError, IndexNotFoundError
from rag.retrieval import retrieve
from rag.store import build_index, load_index

ARTICLES = {
    "gipfel.txt": "Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden. Beide sprachen über die Ukraine.",
    "wetter.txt": "In Wien regnete es am Dienstag den ganzen Tag. Die Temperaturen lagen bei fünf Grad.",
    "fussball.txt": "Rapid Wien gewann das Derby mit drei zu eins. Die Fans feierten bis in die Nacht.",
}


def write_corpus(root: Path, articles: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in articles.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", ARTICLES)


def test_build_and_load_roundtrip_keeps_offsets(corpus, tmp_path):
    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    assert set(idx.documents) == {"gipfel", "wetter", "fussball"}
    loaded = load_index(tmp_path / "idx", embedder=FakeEmbedder())
    assert loaded.manifest["counts"] == {"documents": 3, "chunks": len(loaded.chunks)}
    hits = retrieve(loaded, "Wie lange dauerte der Videogipfel?", k=2)
    assert hits[0].doc_id == "gipfel"
    doc = loaded.documents[hits[0].doc_id]
    assert doc.text[hits[0].start : hits[0].end] == hits[0].text


def test_rebuild_skips_unchanged_articles(corpus, tmp_path):
    fake = FakeEmbedder()
    build_index(corpus, tmp_path / "idx", embedder=fake)
    first = fake.embedded
    assert first >= 3
    (corpus / "neu.txt").write_text("Die Nato verlegte zusätzliche Truppen nach Polen.", encoding="utf-8")
    idx = build_index(corpus, tmp_path / "idx", embedder=fake)
    assert fake.embedded - first == len([c for c in idx.chunks.values() if c.doc_id == "neu"])
    s = idx.last_build
    assert (s.new, s.changed, s.removed, s.unchanged) == (1, 0, 0, 3)


def test_no_change_rebuild_writes_nothing(corpus, tmp_path):
    fake = FakeEmbedder()
    first = build_index(corpus, tmp_path / "idx", embedder=fake)
    calls = fake.calls
    again = build_index(corpus, tmp_path / "idx", embedder=fake)
    assert fake.calls == calls
    assert again.version_dir == first.version_dir
    assert not again.last_build.wrote
    assert "keine Änderung" in again.last_build.line()


def test_changed_and_deleted_articles_are_updated(corpus, tmp_path):
    fake = FakeEmbedder()
    build_index(corpus, tmp_path / "idx", embedder=fake)
    (corpus / "wetter.txt").write_text("In Graz schneite es am Mittwoch heftig.", encoding="utf-8")
    (corpus / "fussball.txt").unlink()
    idx = build_index(corpus, tmp_path / "idx", embedder=fake)
    s = idx.last_build
    assert (s.changed, s.removed) == (1, 1)
    assert "fussball" not in idx.documents
    assert all(c.doc_id != "fussball" for c in idx.chunks.values())
    assert "Graz" in idx.documents["wetter"].text
    assert idx.faiss.ntotal == len(idx.chunks)


def test_changed_model_means_full_rebuild(corpus, tmp_path):
    build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    other = FakeEmbedder(fingerprint="fake@2")
    idx = build_index(corpus, tmp_path / "idx", embedder=other)
    assert idx.last_build.full_rebuild and "Modell" in idx.last_build.reason
    assert other.embedded == len(idx.chunks)


def test_changed_chunking_means_full_rebuild(corpus, tmp_path):
    build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    idx = build_index(corpus, tmp_path / "idx", Config(chunk_size=300, chunk_overlap=50), embedder=FakeEmbedder())
    assert idx.last_build.full_rebuild and "Einstellungen" in idx.last_build.line()


def test_embedding_cache_survives_rebuild_from_scratch(corpus, tmp_path):
    fake = FakeEmbedder()
    build_index(corpus, tmp_path / "idx", embedder=fake)
    embedded = fake.embedded
    (tmp_path / "idx" / "CURRENT").unlink()  # the version is gone, the cache is not
    build_index(corpus, tmp_path / "idx", embedder=fake)
    assert fake.embedded == embedded


def test_missing_index_raises_not_found(tmp_path):
    with pytest.raises(IndexNotFoundError, match="rag build"):
        load_index(tmp_path / "nichts", embedder=FakeEmbedder())


@pytest.mark.parametrize("victim", ["faiss.index", "chunks.sqlite", "manifest.json"])
def test_truncated_index_file_raises_clear_error_and_build_repairs(corpus, tmp_path, victim):
    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    path = idx.version_dir / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorruptError, match="rag build"):
        load_index(tmp_path / "idx", embedder=FakeEmbedder())
    repaired = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    assert repaired.last_build.full_rebuild
    assert retrieve(load_index(tmp_path / "idx", embedder=FakeEmbedder()), "Derby Rapid", k=1)[0].doc_id == "fussball"


def test_index_from_other_model_is_rejected_on_load(corpus, tmp_path):
    build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    with pytest.raises(IndexCorruptError, match="anderen Modell"):
        load_index(tmp_path / "idx", embedder=FakeEmbedder(fingerprint="fake@other"))


def test_manifest_of_other_format_version_is_rejected(corpus, tmp_path):
    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    m = json.loads((idx.version_dir / "manifest.json").read_text())
    m["format_version"] = 999
    (idx.version_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(IndexCorruptError, match="Format"):
        load_index(tmp_path / "idx", embedder=FakeEmbedder())


def test_upsert_and_delete_make_new_versions(corpus, tmp_path):
    from rag.corpus import load_corpus

    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    extra = write_corpus(tmp_path / "extra", {"bahn.txt": "Die ÖBB kündigten einen Streik für Montag an."})
    doc = load_corpus(extra).documents[0]
    bigger = idx.upsert([doc])
    assert "bahn" in bigger.documents and "bahn" not in idx.documents
    smaller = bigger.delete(["gipfel"])
    assert set(smaller.documents) == {"bahn", "wetter", "fussball"}
    assert load_index(tmp_path / "idx", embedder=FakeEmbedder()).version_dir == smaller.version_dir


def test_stale_temporary_folders_are_cleaned(corpus, tmp_path):
    root = tmp_path / "idx"
    build_index(corpus, root, embedder=FakeEmbedder())
    (root / ".tmp-deadbeef").mkdir()
    (root / ".tmp-deadbeef" / "faiss.index").write_bytes(b"half")
    (corpus / "x.txt").write_text("Neuer Artikel über die Bahn.", encoding="utf-8")
    build_index(corpus, root, embedder=FakeEmbedder())
    assert not (root / ".tmp-deadbeef").exists()
    assert len(list(root.glob("v-*"))) <= 2


def test_concurrent_builds_serialise(corpus, tmp_path):
    root = tmp_path / "idx"
    errors: list[Exception] = []

    def run():
        try:
            build_index(corpus, root, embedder=FakeEmbedder(delay=0.05))
        except Exception as e:  # noqa: BLE001  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    idx = load_index(root, embedder=FakeEmbedder())
    assert len(idx.documents) == 3 and idx.faiss.ntotal == len(idx.chunks)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import threading
    sys.path.insert(0, {tests!r})
    from fakes import FakeEmbedder
    from rag import store

    def stop(where):
        # Tell the test where the build is, then stay there until it kills this process.
        print("at", where, flush=True)
        threading.Event().wait()

    def progress(frac, msg):
        if msg.startswith({phase!r}):
            stop(msg)

    def pause_before(name):
        original = getattr(store, name)

        def paused(*args, **kwargs):
            stop(name)
            return original(*args, **kwargs)

        setattr(store, name, paused)

    if {phase!r}.startswith("_"):
        pause_before({phase!r})
    store.build_index({corpus!r}, {index!r}, embedder=FakeEmbedder(), progress=progress)
    print("done", flush=True)
    """
)


# Where the build is killed: progress messages (chunking, after the first of several embedding
# batches, before writing) and store functions (the new version written but not yet renamed;
# renamed but CURRENT not yet switched to it).
KILL_POINTS = ["Artikel zerlegen", "Einbetten", "Index schreiben", "_fsync_tree", "_switch_current"]


@pytest.mark.parametrize("phase", KILL_POINTS)
def test_build_killed_midway_leaves_previous_index_answering(tmp_path, phase):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    root = tmp_path / "idx"
    build_index(corpus, root, embedder=FakeEmbedder())
    before = [p.doc_id for p in retrieve(load_index(root, embedder=FakeEmbedder()), "Derby Rapid Wien", k=3)]
    # Many new articles, so that the killed build has several embedding batches and much to write.
    write_corpus(corpus, {f"neu{i}.txt": f"Artikel {i} über Verkehr in Linz. " * 40 for i in range(40)})
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), corpus=str(corpus), index=str(root), phase=phase)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        reached = next((line.split(" ", 1)[1].strip() for line in proc.stdout if line.startswith("at ")), None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert reached is not None and reached.startswith(phase), f"the build never reached {phase!r}"
    if phase == "Einbetten":  # killed between batches, not after the last one
        done, total = map(int, reached.split()[1].split("/"))
        assert done < total
    idx = load_index(root, embedder=FakeEmbedder())  # the previous version, complete and answering
    assert len(idx.documents) == 3 and idx.faiss.ntotal == len(idx.chunks)
    assert [p.doc_id for p in retrieve(idx, "Derby Rapid Wien", k=3)] == before
    rebuilt = build_index(corpus, root, embedder=FakeEmbedder())
    assert len(rebuilt.documents) == 43
    assert not list(root.glob(".tmp-*"))
    assert len(list(root.glob("v-*"))) <= 2  # a version renamed but never switched to is removed too


def test_memos_forget_the_least_recently_used_entry_first():
    from rag.store import LRUCache

    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_index_memos_are_cleared_through_one_method(fake_seed_index):
    from rag.answering import answer

    # The rules-only reader embeds the candidate sentences, so every memo fills.
    idx = load_index(fake_seed_index.root, Config(reader="heuristic", abstain_threshold=-1.0), embedder=FakeEmbedder())
    answer(idx, "Wie lange dauerte der Videogipfel?")
    sizes = idx.cache_sizes()
    assert sizes["queries"] == 1 and sizes["sentence_vectors"] > 0 and sizes["sentence_spans"] > 0
    assert sizes["derived"] == 1  # the topic this answer leaves a chat with
    idx.clear_caches(["queries"])
    assert idx.cache_sizes() == {**sizes, "queries": 0}
    idx.clear_caches()
    assert set(idx.cache_sizes().values()) == {0} and "documents" in idx.cache_sizes()
