"""How the IVF vector index was chosen (README, Scale): FAISS index types on 10⁶ stand-in vectors,
and the stand-in itself checked against real vectors.

    .venv/bin/python bench/vector_index.py [--n 1000000] [--cache EMBCACHE.sqlite]

The real vectors come from an embedding cache (`embcache.sqlite` of an index folder; by default
the one `rag eval` fills, ~/.cache/rag/eval/). Questions: 200 real ones (news-qa + XQuAD-de).
Recall@10 against exact search over the same vectors; times for one question at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np

from rag.config import Config
from rag.embedding import load_embedder
from rag.scale import draw_mixture, fit_mixture, real_questions


def real_vectors(cache: Path) -> np.ndarray:
    db = sqlite3.connect(cache)
    fp = db.execute("SELECT fp, COUNT(*) c FROM emb GROUP BY fp ORDER BY c DESC LIMIT 1").fetchone()[0]
    return np.stack([np.frombuffer(b, np.float32) for (b,) in db.execute("SELECT vec FROM emb WHERE fp = ?", (fp,))])


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / exact.shape[1] for a, b in zip(found, exact)]))


def per_question_ms(index, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def stand_in_check(real: np.ndarray, queries: np.ndarray, rng) -> None:
    """IVF128 recall curves: real vectors against stand-ins fitted to 2,000 other real vectors."""
    rng.shuffle(real)
    fit, test = real[:2000], real[2000:]

    def curve(x: np.ndarray) -> list[float]:
        exact = faiss.IndexFlatIP(x.shape[1])
        exact.add(x)
        truth = exact.search(queries, 10)[1]
        ivf = faiss.index_factory(x.shape[1], "IVF128,Flat", faiss.METRIC_INNER_PRODUCT)
        ivf.train(x)
        ivf.add(x)
        out = []
        for p in (1, 2, 4, 8):
            ivf.nprobe = p
            out.append(round(recall(ivf.search(queries, 10)[1], truth), 3))
        return out

    print("real vectors, nprobe 1/2/4/8:", curve(test))
    for cells in (16, 64):
        print(f"stand-in, {cells} cells:", curve(draw_mixture(fit_mixture(fit, cells), len(test), rng)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/rag/eval/embcache.sqlite")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vector-index.faiss"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    real = real_vectors(args.cache)
    queries = load_embedder(Config()).embed_queries(real_questions(200))
    stand_in_check(real.copy(), queries, rng)

    x = draw_mixture(fit_mixture(real, 64), args.n, rng)
    x[: len(real)] = real
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    truth = exact.search(queries, 10)[1]
    print("exact", json.dumps({"ms": per_question_ms(exact, queries[:50]), "disk_mb": x.nbytes / 1e6}))
    cells = 2 ** round(np.log2(2 * np.sqrt(args.n)))
    for factory in ("HNSW32", f"IVF{cells},Flat", f"IVF{cells},SQ8", f"IVF{cells},SQfp16"):
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        if not index.is_trained:
            index.cp.niter = 10
            index.train(x[rng.choice(args.n, min(args.n, cells * 40), replace=False)])
        index.add(x)
        out = {"build_s": round(time.perf_counter() - t, 1)}
        faiss.write_index(index, str(args.out))
        out["disk_mb"] = round(os.path.getsize(args.out) / 1e6)
        del index
        for mode, flags in (("mmap", faiss.IO_FLAG_MMAP), ("memory", 0)):
            if mode == "mmap" and factory.startswith("HNSW"):
                continue
            t = time.perf_counter()
            index = faiss.read_index(str(args.out), flags)
            out[f"{mode}_open_s"] = round(time.perf_counter() - t, 2)
            if factory.startswith("HNSW"):
                for ef in (32, 64, 128):
                    index.hnsw.efSearch = ef
                    out[f"ef{ef}"] = (round(recall(index.search(queries, 10)[1], truth), 3), round(per_question_ms(index, queries), 2))
            else:
                for probes in (cells // 16, cells // 8, cells * 3 // 20):
                    index.nprobe = probes
                    index.parallel_mode = 0
                    r = round(recall(index.search(queries, 10)[1], truth), 3)
                    one = per_question_ms(index, queries)
                    index.parallel_mode = 1
                    out[f"{mode}_nprobe{probes}"] = (r, round(one, 2), round(per_question_ms(index, queries), 2))
            del index
        print(factory, json.dumps(out), flush=True)
    args.out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
