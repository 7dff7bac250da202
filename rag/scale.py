"""`rag bench --scale N`: an index of N chunks built, opened and searched as a big archive would be.

The corpus is real 10kGNAD text: each synthetic article strings together runs of consecutive
sentences from random real articles of one 10kGNAD category (≈ 3,000 characters, ≈ 8 chunks), written to one JSONL file
and built through the normal streaming build (chunk table, BM25, vector index, manifest, swap).

Embedding a million chunks with the real encoder would take most of a day here, so only a sample
(`sample`, default 2,500 chunk texts of randomly chosen articles) is embedded by it. The other vectors come from a cheap
stand-in that keeps the real distribution: a Gaussian mixture fitted to the sample (k-means cells of
the real vectors, each with the per-dimension spread of its members around the centroid), drawn per
chunk and L2-normalised like the encoder's output. The cluster structure is what makes approximate
search easy or hard, so recall measured on it is representative; the questions are real questions
embedded by the real encoder.

Reported (JSON): chunks, index_type, build_s, load_s (opening the index in a fresh process),
rss_mb (that process's peak after all the questions), disk_mb (the version folder), query_p50_ms /
query_p95_ms (`retrieve`, hybrid, question embedding included, warm), embed_p50_ms (the question's
embedding alone, same run), recall_at_10 (the index's top 10 against exact search over the same
vectors, for the same questions).
"""
from __future__ import annotations

import itertools
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bench import PEAK_RSS
from .config import Config
from .errors import RagError
from .evaluation import EVAL_DIR, percentile

ARTICLE_CHARS = 3_000
RUN_SENTENCES = (4, 10)  # consecutive real sentences per run

SERVE = PEAK_RSS + """
import json, statistics, sys, time
t0 = time.perf_counter()
import rag
from rag.retrieval import retrieve
t1 = time.perf_counter()
idx = rag.load_index(sys.argv[1])
t2 = time.perf_counter()
questions = json.loads(open(sys.argv[2], encoding="utf-8").read())
retrieve(idx, questions[0], k=10)  # warm-up: the model and the lazily opened parts
embed, query = [], []
for q in questions[1:]:
    t = time.perf_counter(); idx.embedder.embed_queries([q]); embed.append(time.perf_counter() - t)
    idx.clear_caches(["queries"])
    t = time.perf_counter(); retrieve(idx, q, k=10); query.append(time.perf_counter() - t)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "embed": embed, "query": query,
                  "rss_mb": peak_rss_mb()}))
"""


def real_sentences(csv_path: Path, limit: int | None = None) -> dict[str, list[list[str]]]:
    """The sentences of each real article, in order, grouped by the article's 10kGNAD category."""
    from .evaluation import gnad_rows
    from .text import split_sentences

    by_label: dict[str, list[list[str]]] = {}
    for _, label, text in itertools.islice(gnad_rows(csv_path), limit):
        spans = split_sentences(text)
        if len(spans) >= 3:
            by_label.setdefault(label, []).append([text[s:e] for s, e in spans])
    if not by_label:
        raise RagError(f"Keine Artikel in {csv_path}")
    return by_label


def synthetic_articles(by_label: dict[str, list[list[str]]], seed: int = 0):
    """Endless unique articles of real sentences: runs of consecutive sentences from random
    articles of one category (so that an article, and a chunk across two runs, stays on a topic
    as a real one does)."""
    rng = random.Random(seed)
    labels = sorted(by_label)
    weights = [len(by_label[label]) for label in labels]
    i = 0
    while True:
        pool = by_label[rng.choices(labels, weights)[0]]
        parts, size = [], 0
        while size < ARTICLE_CHARS:
            sents = rng.choice(pool)
            start = rng.randrange(len(sents))
            run = sents[start : start + rng.randint(*RUN_SENTENCES)]
            parts.append(" ".join(run))
            size += sum(len(s) + 1 for s in run)
        yield {"id": f"scale-{i}", "text": "\n\n".join(parts), "date": f"20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"}
        i += 1


class StandInEmbedder:
    """Real vectors for the sample's texts (embedded beforehand by the real encoder), draws from
    a Gaussian mixture fitted to them for every other text (see the module docstring). Its
    fingerprint is the real encoder's, so the index opens and answers like any other; questions
    are embedded by the real encoder."""

    def __init__(self, real, known: dict[str, np.ndarray], cells: int = 64, seed: int = 0):
        self.real = real
        self.fingerprint = real.fingerprint
        self.dim = real.dim
        self.known = known
        self.mixture = fit_mixture(np.stack(list(known.values())), cells, seed)
        self.rng = np.random.default_rng(seed)
        self.real_count = 0

    def embed_queries(self, texts, progress=None):
        return self.real.embed_queries(texts, progress)

    def embed_passages(self, texts: Sequence[str], progress=None, isolated: bool = False) -> np.ndarray:
        out = self.draw(len(texts))
        for i, t in enumerate(texts):
            vec = self.known.get(t)
            if vec is not None:
                out[i] = vec
                self.real_count += 1
        return out

    def draw(self, n: int) -> np.ndarray:
        return draw_mixture(self.mixture, n, self.rng)


def draw_mixture(mixture: tuple[np.ndarray, np.ndarray, np.ndarray], n: int, rng, part: int = 100_000) -> np.ndarray:
    """n L2-normalised vectors drawn from a mixture of fit_mixture, `part` at a time (memory)."""
    centroids, spread, weights = mixture
    out = np.empty((n, centroids.shape[1]), np.float32)
    for i in range(0, n, part):
        m = min(part, n - i)
        cell = rng.choice(len(centroids), size=m, p=weights)
        v = centroids[cell] + rng.standard_normal((m, centroids.shape[1]), dtype=np.float32) * spread[cell]
        out[i : i + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def fit_mixture(vectors: np.ndarray, cells: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means cells of real vectors → (centroids, per-dimension spread per cell, cell weights)."""
    import faiss

    cells = max(1, min(cells, len(vectors) // 39))  # faiss wants 39 points per cell
    km = faiss.Kmeans(vectors.shape[1], cells, niter=20, seed=seed, spherical=False)
    km.train(np.ascontiguousarray(vectors, dtype=np.float32))
    _, assign = km.index.search(vectors, 1)
    assign = assign[:, 0]
    centroids = km.centroids.astype(np.float32)
    spread = np.zeros_like(centroids)
    weights = np.zeros(cells)
    for c in range(cells):
        members = vectors[assign == c]
        weights[c] = len(members)
        if len(members) > 1:
            spread[c] = (members - centroids[c]).std(axis=0)
    return centroids, spread.astype(np.float32), weights / weights.sum()


def real_questions(n: int, seed: int = 0) -> list[str]:
    """Real German questions (news-qa and XQuAD-de, shipped in eval/)."""
    from .evaluation import load_qa

    qs = [item.question for name in ("news-qa.jsonl", "xquad-de-dev.json") if (EVAL_DIR / name).exists()
          for item in load_qa(EVAL_DIR / name)[0]]
    random.Random(seed).shuffle(qs)
    return qs[:n] or ["Wie lange dauerte der Gipfel?"]


def exact_recall(index, queries: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top k (inner product over the chunks' float32 vectors, as the build
    stored them in the embedding cache) that the index's search returns (ties counted as hits)."""
    import faiss

    from .store import EmbeddingCache, text_hash

    found_ids = index.vector_index.search(queries, k)[1]
    cache = EmbeddingCache(index.root / "embcache.sqlite")
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(index.vector_index.dim))
    try:
        batch: list[tuple[int, str]] = []
        for item in itertools.chain(index.chunk_texts(), [None]):
            if item is not None:
                batch.append((item[0], text_hash(item[1])))
            if batch and (item is None or len(batch) == 50_000):
                vecs = cache.get(index.manifest["model"]["fingerprint"], list({h for _, h in batch}), index.vector_index.dim)
                exact.add_with_ids(np.stack([vecs[h] for _, h in batch]), np.array([c for c, _ in batch], dtype=np.int64))
                batch = []
    finally:
        cache.close()
    exact_scores, exact_ids = exact.search(queries, k)
    # A returned chunk counts when its exact score reaches the exact k-th score: chunks with the
    # same text have the same vector, and which of two tied ids either search names is arbitrary.
    hits = []
    for q, found, kth in zip(queries, found_ids, exact_scores[:, -1]):
        found = found[found >= 0]
        scores = exact.reconstruct_batch(found) @ q if len(found) else np.zeros(0)
        hits.append(min(k, int((scores >= kth - 1e-6).sum())) / k)
    return float(np.mean(hits))


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def run_scale(
    n_chunks: int,
    csv_path: Path | None = None,
    sample: int = 2_500,
    questions: int = 200,
    config: Config | None = None,
    workdir: Path | None = None,
    echo: Callable[[str], None] = lambda s: None,
    keep: bool = False,
) -> dict:
    """Build an index of ≈ n_chunks chunks in a temporary folder and measure it (module docstring)."""
    from .chunking import chunk_document
    from .corpus import Document
    from .embedding import load_embedder
    from .store import build_index, load_index

    config = config or Config()
    csv_path = Path(csv_path or EVAL_DIR / "data" / "10kGNAD-test.csv")
    work = Path(tempfile.mkdtemp(prefix="rag-scale-", dir=workdir))
    try:
        echo("Sätze lesen …")
        articles = real_sentences(csv_path)
        gen = synthetic_articles(articles)
        probe = [next(gen) for _ in range(50)]

        def chunk_texts(art: dict) -> list[str]:
            doc = Document(id=art["id"], text=art["text"], title="", date=None, source="")
            return [c.text for c in chunk_document(doc, config.chunk_size, config.chunk_overlap)]

        per_article = statistics.mean(len(chunk_texts(a)) for a in probe)
        n_articles = max(1, round(n_chunks / per_article))
        echo(f"{n_articles} Artikel (≈ {per_article:.1f} Abschnitte je Artikel) schreiben …")
        corpus = work / "archive.jsonl"
        gen = synthetic_articles(articles)
        with open(corpus, "w", encoding="utf-8") as f:
            for _ in range(n_articles):
                f.write(json.dumps(next(gen), ensure_ascii=False) + "\n")

        echo(f"{sample} Abschnitte zufälliger Artikel mit dem echten Modell einbetten …")
        real = load_embedder(config)
        chosen = random.Random(1).sample(range(n_articles), min(n_articles, max(1, round(2 * sample / per_article))))
        gen = synthetic_articles(articles)
        picked: list[str] = []
        wanted = set(chosen)
        for i in range(max(chosen) + 1):
            art = next(gen)
            if i in wanted:
                picked += chunk_texts(art)
        texts = list(dict.fromkeys(random.Random(2).sample(picked, min(sample, len(picked)))))
        embedder = StandInEmbedder(real, dict(zip(texts, real.embed_passages(texts))))

        echo("Aufbau …")
        root = work / "index"
        last = [0.0]

        def progress(frac, msg):
            if time.monotonic() - last[0] > 30:
                last[0] = time.monotonic()
                echo(f"  {100 * frac:.0f} % {msg}")

        t = time.perf_counter()
        idx = build_index(corpus, root, config, embedder=embedder, progress=progress)
        build_s = time.perf_counter() - t
        out = {"chunks": len(idx.chunks), "index_type": idx.vector_index.params["type"], "build_s": build_s}
        version = idx.version_dir
        del idx

        echo("Öffnen und Fragen in einem neuen Prozess …")
        qs = real_questions(questions + 1)
        qfile = work / "questions.json"
        qfile.write_text(json.dumps(qs, ensure_ascii=False), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-c", SERVE, str(root), str(qfile)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"Messprozess fehlgeschlagen:\n{proc.stderr[-2000:]}")
        served = json.loads(proc.stdout.strip().splitlines()[-1])
        query_ms = [1000 * s for s in served["query"]]
        embed_ms = [1000 * s for s in served["embed"]]
        out.update(
            load_s=served["load_s"], rss_mb=served["rss_mb"], disk_mb=_dir_mb(version),
            query_p50_ms=statistics.median(query_ms), query_p95_ms=percentile(query_ms, 0.95),
        )

        echo("Recall gegen exakte Suche …")
        idx = load_index(root, config, embedder=real)
        out["recall_at_10"] = exact_recall(idx, real.embed_queries(qs[1:]))
        idx.close()
        out.update(
            embed_p50_ms=statistics.median(embed_ms), import_s=served["import_s"], articles=n_articles,
            real_vectors=embedder.real_count, index_params=idx.vector_index.params,
        )
        if keep:
            out["folder"] = str(work)
        return out
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
