"""`rag bench`: build, incremental update, cold start and query latency on real news.

Timings are reported, never asserted: these machines are shared and noisy, so compare ratios
measured in one run."""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .config import Config

DEFAULT_CSV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "10kGNAD-test.csv"
DEFAULT_QA = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "xquad-de-dev.json"

COLD_START = """
import sys, time, json
t0 = time.perf_counter()
import rag
idx = rag.load_index(sys.argv[1])
t1 = time.perf_counter()
ans = idx.answer(sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_answer_s": t2 - t1}))
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _questions(n: int) -> list[str]:
    """Real German questions for latency runs (XQuAD-de if present, else generic ones)."""
    if DEFAULT_QA.exists():
        data = json.loads(DEFAULT_QA.read_text(encoding="utf-8"))
        qs = [qa["question"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]
    else:
        qs = ["Wie lange dauerte der Gipfel?", "Wer gewann die Wahl?", "Wann beginnt der Streik?"]
    return [qs[i % len(qs)] for i in range(n)]


def write_corpus(source: Path, dest: Path, limit: int | None) -> int:
    """Copy a folder, or turn a 10kGNAD CSV into one .txt per article, into `dest`."""
    from .evaluation import load_distractors

    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())[: limit or None]
        for p in files:
            target = dest / p.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
        return len(files)
    docs = load_distractors(source, limit)
    for i, d in enumerate(docs):
        (dest / f"{i:05d}.txt").write_text(d.text, encoding="utf-8")
    return len(docs)


def run_bench(corpus: Path = DEFAULT_CSV, limit: int | None = None, queries: int = 100, config: Config | None = None) -> dict:
    from .chunking import chunk_document
    from .corpus import load_corpus
    from .embedding import load_embedder
    from .store import build_index

    config = config or Config()
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        corpus_dir = work / "corpus"
        n_articles = write_corpus(Path(corpus), corpus_dir, limit)
        out: dict = {"articles": n_articles, "cpus": os.cpu_count()}

        # Raw encoder throughput over exactly the chunks the build will embed.
        embedder = load_embedder(config)
        docs = load_corpus(corpus_dir).documents
        texts = [c.text for d in docs for c in chunk_document(d, config.chunk_size, config.chunk_overlap)]
        t = time.perf_counter()
        for i in range(0, len(texts), 64):
            embedder.embed_passages(texts[i : i + 64])
        raw = time.perf_counter() - t
        out.update(chunks=len(texts), raw_encode_s=raw, passages_per_s=len(texts) / raw)

        # Full build: a fresh index folder, so nothing is cached.
        t = time.perf_counter()
        idx = build_index(corpus_dir, work / "index", config)
        out["build_s"] = time.perf_counter() - t
        out["build_overhead"] = out["build_s"] / raw - 1

        t = time.perf_counter()
        build_index(corpus_dir, work / "index", config)
        out["no_change_rebuild_s"] = time.perf_counter() - t

        (corpus_dir / "zz-neu.txt").write_text(
            "Wien – Die Stadt Wien eröffnet im Frühjahr eine neue Straßenbahnlinie zum Hauptbahnhof. "
            "Die Bauarbeiten dauerten knapp drei Jahre und kosteten rund 80 Millionen Euro.",
            encoding="utf-8",
        )
        t = time.perf_counter()
        idx = build_index(corpus_dir, work / "index", config)
        out["add_one_article_s"] = time.perf_counter() - t

        qs = _questions(queries)
        idx.retrieve(qs[0])  # warm-up
        lat_r, lat_a = [], []
        for q in qs:
            t = time.perf_counter()
            idx.retrieve(q, k=5)
            lat_r.append((time.perf_counter() - t) * 1000)
        for q in qs:
            t = time.perf_counter()
            idx.answer(q, k=3)
            lat_a.append((time.perf_counter() - t) * 1000)
        out.update(
            retrieve_p50_ms=statistics.median(lat_r), retrieve_p95_ms=_pct(lat_r, 0.95),
            answer_p50_ms=statistics.median(lat_a), answer_p95_ms=_pct(lat_a, 0.95),
        )

        proc = subprocess.run(
            [sys.executable, "-c", COLD_START, str(work / "index"), qs[1]], capture_output=True, text=True, check=True
        )
        t0 = time.perf_counter()
        cold = json.loads(proc.stdout.strip().splitlines()[-1])
        out.update(cold_load_s=cold["load_s"], cold_first_answer_s=cold["first_answer_s"], cold_start_s=cold["load_s"] + cold["first_answer_s"])
        out["index_mb"] = _dir_size(work / "index") / 1e6
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


GOALS = {
    "build_overhead": ("≤ 0.15", lambda v: v <= 0.15),
    "no_change_rebuild_s": ("< 1 s", lambda v: v < 1),
    "add_one_article_s": ("< 3 s", lambda v: v < 3),
    "cold_start_s": ("< 5 s", lambda v: v < 5),
    "retrieve_p50_ms": ("≤ 25 ms", lambda v: v <= 25),
}


def format_report(r: dict) -> str:
    rows = [f"{r['articles']} Artikel, {r['chunks']} Abschnitte, {r['cpus']} Kerne"]
    for key, value in r.items():
        if key in ("articles", "chunks", "cpus"):
            continue
        goal = GOALS.get(key)
        mark = "" if goal is None else f"   Ziel {goal[0]}: {'ok' if goal[1](value) else 'VERFEHLT'}"
        rows.append(f"{key:<22} {value:10.3f}{mark}")
    return "\n".join(rows)
