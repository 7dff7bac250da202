"""Scale: tables read on demand, the IVF vector index, streaming corpus files, sampled file checks,
`rag bench --scale` (real model) and the Ray build (real model, local Ray instance)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeEmbedder
from rag import Config, CorpusError, IndexCorruptError
from rag.corpus import CorpusLoad, iter_corpus
from rag.retrieval import retrieve
from rag.store import build_index, load_index

TOPICS = ["Verkehr in Linz", "Wahl in Graz", "Derby in Wien", "Schnee in Tirol", "Budget des Bundes", "Oper in Salzburg"]


def articles(n: int, offset: int = 0) -> dict[str, str]:
    """n distinct articles of several chunks each (so small configs cross the IVF threshold)."""
    out = {}
    for i in range(offset, offset + n):
        topic = TOPICS[i % len(TOPICS)]
        out[f"a{i:03d}.txt"] = " ".join(f"Meldung {i}, Absatz {j}: Neues zu {topic} und Nummer {i * 7 + j}." for j in range(60))
    return out


def write(root: Path, docs: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


# ------------------------------------------------------------------ tables on demand


def test_loaded_index_reads_documents_only_when_asked(tmp_path):
    corpus = write(tmp_path / "c", articles(12))
    build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    idx = load_index(tmp_path / "idx", embedder=FakeEmbedder())
    sizes = idx.cache_sizes
    assert sizes()["documents"] == 0 and sizes()["chunk_spans"] == 0  # opening read no rows
    assert len(idx.documents) == 12 and len(idx.chunks) == idx.manifest["counts"]["chunks"]
    hits = retrieve(idx, "Derby in Wien", k=3)
    assert "Derby in Wien" in hits[0].text
    assert 0 < sizes()["documents"] <= 12
    assert "a004" in idx.documents and "nirgends" not in idx.documents and idx.documents.get("nirgends") is None
    assert idx.chunks_of("a004") == sorted(idx.chunks_of("a004"), key=lambda c: idx.chunks[c].start)
    assert sorted(idx.documents) == sorted(f"a{i:03d}" for i in range(12))


def test_document_cache_stays_bounded(tmp_path, monkeypatch):
    import rag.tables

    monkeypatch.setattr(rag.tables, "DOC_CACHE", 3)
    corpus = write(tmp_path / "c", articles(8))
    idx = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    for doc_id in list(idx.documents):
        assert idx.documents[doc_id].id == doc_id
    assert idx.cache_sizes()["documents"] == 3


# ------------------------------------------------------------------ the vector index


def test_large_index_is_ivf_and_takes_incremental_adds_without_retraining(tmp_path):
    cfg = Config(ann_threshold=100, ann_probe_share=1.0)
    corpus = write(tmp_path / "c", articles(24))
    idx = build_index(corpus, tmp_path / "idx", cfg, embedder=FakeEmbedder())
    params = idx.manifest["vector_index"]
    assert params["type"] == "ivf-fp16" and params["nlist"] >= 2 and idx.faiss.ntotal == len(idx.chunks) >= 100
    quantizer = idx.faiss.quantizer.reconstruct_n(0, params["nlist"]).copy()

    write(corpus, {"neu.txt": "Die neue Seilbahn auf den Kahlenberg fährt ab Mai im Zehn-Minuten-Takt. " * 8})
    (corpus / "a000.txt").unlink()
    idx = build_index(corpus, tmp_path / "idx", cfg, embedder=FakeEmbedder())
    assert idx.last_build.new == 1 and idx.last_build.removed == 1
    assert idx.manifest["vector_index"] == params  # same cells, not trained again
    assert np.array_equal(idx.faiss.quantizer.reconstruct_n(0, params["nlist"]), quantizer)
    assert idx.faiss.ntotal == len(idx.chunks)
    assert retrieve(idx, "Seilbahn Kahlenberg Zehn-Minuten-Takt", k=1, mode="dense")[0].doc_id == "neu"
    gone = set(load_index(tmp_path / "idx", cfg, embedder=FakeEmbedder()).dense_search("Meldung 0 Verkehr in Linz", 200))
    assert all(idx.chunks[c].doc_id != "a000" for c, _ in gone)
    # Chunks of an IVF index come back as vectors (follow-up questions rank a topic's chunks by them).
    cid = idx.chunks_of("neu")[0]
    assert idx.vectors([cid]).shape == (1, 64)


def test_exact_index_grows_into_ivf_past_the_threshold(tmp_path):
    cfg = Config(ann_threshold=150)
    corpus = write(tmp_path / "c", articles(4))
    small = build_index(corpus, tmp_path / "idx", cfg, embedder=FakeEmbedder())
    assert small.manifest["vector_index"]["type"] == "flat"
    write(corpus, articles(20, offset=4))
    big = build_index(corpus, tmp_path / "idx", cfg, embedder=FakeEmbedder())
    assert big.manifest["vector_index"]["type"] == "ivf-fp16" and big.faiss.ntotal == len(big.chunks)
    assert big.last_build.embedded == len(big.chunks) - len(small.chunks)  # the old vectors were kept


def test_large_files_are_checked_by_samples_on_open(tmp_path, monkeypatch):
    import rag.store

    monkeypatch.setattr(rag.store, "VERIFY_FULL_BYTES", 1000)
    idx = build_index(write(tmp_path / "c", articles(6)), tmp_path / "idx", embedder=FakeEmbedder())
    record = idx.manifest["files"]["faiss.index"]
    assert "sample_sha256" in record
    load_index(tmp_path / "idx", embedder=FakeEmbedder())
    path = idx.version_dir / "faiss.index"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # the first block is always sampled
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="faiss.index"):
        load_index(tmp_path / "idx", embedder=FakeEmbedder())


# ------------------------------------------------------------------ streaming corpus files


def test_build_from_jsonl_file_streams_and_skips_bad_lines(tmp_path):
    lines = [json.dumps({"id": f"n{i}", "text": text, "date": "2024-05-0" + str(1 + i % 9)}) for i, text in enumerate(articles(5).values())]
    lines.insert(2, "{kaputt")
    lines.append(json.dumps({"id": "leer", "titel": "ohne Text"}))
    path = tmp_path / "archiv.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    idx = build_index(path, tmp_path / "idx", embedder=FakeEmbedder())
    assert sorted(idx.documents) == [f"n{i}" for i in range(5)] and idx.documents["n1"].date == "2024-05-02"
    assert idx.last_build.skipped == 2 and any("Zeile 3" in w for w in idx.last_build.warnings)


def test_csv_file_is_read_by_its_header(tmp_path):
    path = tmp_path / "archiv.csv"
    path.write_text(
        "ID;Titel;Text;Date\n"
        "x1;Linz;\"Die Straßenbahn in Linz fährt ab Mai; sagt die Stadt.\";2024-05-01\n"
        "x2;Graz;Graz wählt im Herbst einen neuen Gemeinderat.;\n",
        encoding="utf-8",
    )
    load = CorpusLoad()
    docs = list(iter_corpus(path, load))
    assert [d.id for d in docs] == ["x1", "x2"] and docs[0].text.endswith("sagt die Stadt.") and docs[0].date == "2024-05-01"
    bad = tmp_path / "ohne.csv"
    bad.write_text("titel,inhalt\na,b\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="Spalte „text“"):
        list(iter_corpus(bad))


def test_corpus_file_is_read_lazily(tmp_path):
    path = tmp_path / "archiv.jsonl"
    path.write_text(json.dumps({"text": "Erster Artikel über Linz."}) + "\n" + "{kaputt\n", encoding="utf-8")
    load = CorpusLoad()
    stream = iter_corpus(path, load)
    assert next(stream).id == "archiv#1" and load.warnings == []  # the bad line is not read yet
    assert list(stream) == [] and len(load.warnings) == 1


def test_corpus_of_another_file_type_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("Text", encoding="utf-8")
    with pytest.raises(CorpusError, match="weder ein Ordner"):
        iter_corpus(tmp_path / "a.txt")


# ------------------------------------------------------------------ real model: bench and Ray


@pytest.mark.slow
def test_scale_bench_reports_every_figure_with_ivf_recall(tmp_path):
    from rag.scale import run_scale

    out = run_scale(3000, sample=300, questions=15, config=Config(ann_threshold=1000, ann_probe_share=0.5), workdir=tmp_path)
    for key in ("chunks", "index_type", "build_s", "load_s", "rss_mb", "disk_mb", "query_p50_ms", "query_p95_ms", "recall_at_10"):
        assert key in out
    assert 2500 <= out["chunks"] <= 3500 and out["index_type"] == "ivf-fp16" and out["real_vectors"] == 300
    assert 0.8 <= out["recall_at_10"] <= 1.0 and out["query_p50_ms"] > out["embed_p50_ms"] > 0
    assert not list(tmp_path.iterdir())  # the temporary archive is removed


@pytest.mark.slow
def test_ray_build_gives_the_same_chunks_and_results_as_a_local_build(seed_corpus, seed_index, tmp_path):
    ray_idx = build_index(seed_corpus, tmp_path / "ray", ray_address="local")
    assert ray_idx.last_build.embedded == len(ray_idx.chunks) > 0
    spans = lambda idx: sorted((c.doc_id, c.start, c.end) for c in (idx.chunks[i] for i in idx.chunks))  # noqa: E731
    assert spans(ray_idx) == spans(seed_index)
    def top(idx, q):
        return [(p.doc_id, p.start, p.end) for p in retrieve(idx, q, k=5)]

    for q in ("Wie lange dauerte der Gipfel?", "Wer gewann das Derby?", "Was kostet das neue Stadion?"):
        assert top(ray_idx, q) == top(seed_index, q)


KILL_RAY = textwrap.dedent(
    """
    import sys
    from rag.store import build_index

    def progress(frac, msg):
        print("at", msg, flush=True)

    build_index(sys.argv[1], sys.argv[2], ray_address="local", progress=progress)
    """
)


@pytest.mark.slow
def test_killed_ray_build_leaves_the_old_index(seed_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in sorted(seed_corpus.iterdir())[:2]:
        (corpus / p.name).write_bytes(p.read_bytes())
    root = tmp_path / "idx"
    old = build_index(corpus, root)
    before = [(p.doc_id, p.start) for p in retrieve(old, "Wie lange dauerte der Gipfel?", k=3)]
    for p in sorted(seed_corpus.iterdir())[2:]:
        (corpus / p.name).write_bytes(p.read_bytes())
    # Its own session, so that killing the group also kills the Ray processes the build started.
    proc = subprocess.Popen([sys.executable, "-c", KILL_RAY, str(corpus), str(root)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        reached = next((line for line in proc.stdout if line.startswith("at Einbetten")), None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert reached is not None
    again = load_index(root)
    assert again.version_dir == old.version_dir and len(again.documents) == 2
    assert [(p.doc_id, p.start) for p in retrieve(again, "Wie lange dauerte der Gipfel?", k=3)] == before
    resumed = build_index(corpus, root)
    assert len(resumed.documents) == len(list(seed_corpus.iterdir()))
    # What the killed build embedded before it died (at least its first batch) came from the cache.
    assert resumed.last_build.embedded < len(resumed.chunks) - len(old.chunks)


# ------------------------------------------------------------------ command line


def test_ray_flag_without_address_means_a_local_ray_instance():
    from rag.cli import optional_ray_address

    assert optional_ray_address(["build", "--ray"]) == ["build", "--ray", "local"]
    assert optional_ray_address(["build", "--ray", "--index", "x"]) == ["build", "--ray", "local", "--index", "x"]
    assert optional_ray_address(["build", "--ray", "auto"]) == ["build", "--ray", "auto"]
    assert optional_ray_address(["build"]) == ["build"]


def test_rag_build_reads_a_jsonl_archive(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import rag.embedding
    from rag.cli import app

    monkeypatch.setattr(rag.embedding, "load_embedder", lambda config=None: FakeEmbedder())
    monkeypatch.setattr(rag.embedding, "model_fingerprint", lambda config: "fake@1")
    path = tmp_path / "archiv.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"n{i}", "text": t}) for i, t in enumerate(articles(3).values())), encoding="utf-8")
    res = CliRunner().invoke(app, ["build", "--corpus", str(path), "--index", str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    assert "3 Artikel" in res.output and len(load_index(tmp_path / "idx", embedder=FakeEmbedder()).documents) == 3


@pytest.mark.slow
def test_unreachable_ray_cluster_is_one_clear_error_and_keeps_the_index(tmp_path):
    corpus = write(tmp_path / "c", articles(2))
    old = build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder())
    write(corpus, articles(1, offset=5))
    from rag.distributed import RayError

    with pytest.raises(RayError, match="nicht erreichbar") as err:
        build_index(corpus, tmp_path / "idx", embedder=FakeEmbedder(), ray_address="127.0.0.1:1")
    assert "\n" not in str(err.value)
    assert load_index(tmp_path / "idx", embedder=FakeEmbedder()).version_dir == old.version_dir
