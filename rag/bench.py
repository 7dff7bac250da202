"""`rag bench`: build, incremental update, cold start and query latency on real news.

Timings are reported, never asserted: these machines are shared and noisy, so compare figures
measured in one run. Beside wall-clock times the report gives the process CPU time of the raw
encode and of the full build; their ratio (`build_overhead_cpu`) hardly moves when other work
competes for the cores, the wall-clock ratio (`build_overhead`) does."""
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
from typing import Callable

from .config import Config
from .evaluation import EVAL_DIR, percentile

DEFAULT_CSV = EVAL_DIR / "data" / "10kGNAD-test.csv"
DEFAULT_QA = EVAL_DIR / "xquad-de-dev.json"

# Every key of the report, in order: (label, unit, goal text, goal test or None).
FIELDS: dict[str, tuple[str, str, str, Callable[[float], bool] | None]] = {
    "articles": ("Artikel", "", "", None),
    "chunks": ("Abschnitte", "", "", None),
    "cpus": ("Kerne", "", "", None),
    "torch_threads": ("torch-Threads", "", "", None),
    "backend": ("Einbettungs-Backend", "", "", None),
    "load_avg_1m": ("Systemlast (1 min) zu Beginn", "", "", None),
    "raw_encode_s": ("Rohes Einbetten (alle Abschnitte)", "s", "", None),
    "raw_encode_cpu_s": ("  davon CPU-Zeit", "s", "", None),
    "passages_per_s": ("Durchsatz des Modells", "Abschn./s", "", None),
    "build_s": ("Vollständiger Aufbau", "s", "", None),
    "build_cpu_s": ("  davon CPU-Zeit", "s", "", None),
    "build_overhead": ("Mehraufwand über rohes Einbetten", "×100 %", "≤ 0.15", lambda v: v <= 0.15),
    "build_overhead_cpu": ("  dasselbe in CPU-Zeit", "×100 %", "≤ 0.15", lambda v: v <= 0.15),
    "no_change_rebuild_s": ("Aufbau ohne Änderung", "s", "< 1 s", lambda v: v < 1),
    "no_change_rebuild_cpu_s": ("  davon CPU-Zeit", "s", "", None),
    "add_one_article_s": ("Ein Artikel dazu", "s", "< 3 s", lambda v: v < 3),
    "add_one_article_cpu_s": ("  davon CPU-Zeit", "s", "", None),
    "cold_start_s": ("Kaltstart (Prozessstart bis zur 1. Antwort)", "s", "≤ 3 s", lambda v: v <= 3),
    "cold_start_cpu_s": ("  davon CPU-Zeit", "s", "", None),
    "cold_load_s": ("  Import + Index laden", "s", "", None),
    "cold_first_answer_s": ("  erste Antwort (mit Modell laden)", "s", "", None),
    "cold_rss_mb": ("  Spitzen-RSS des neuen Prozesses", "MB", "", None),
    "embed_p50_ms": ("Frage einbetten allein, p50 (warm)", "ms", "", None),
    "retrieve_p50_ms": ("retrieve p50 (warm, mit Frage-Einbettung)", "ms", "≤ 25 ms", lambda v: v <= 25),
    "retrieve_over_embed": ("  retrieve p50 / Einbetten p50", "×", "≤ 1.3", lambda v: v <= 1.3),
    "retrieve_p95_ms": ("retrieve p95", "ms", "", None),
    "retrieve_p50_cpu_ms": ("retrieve p50 CPU-Zeit", "ms", "", None),
    "answer_p50_ms": ("answer p50 (warm)", "ms", "", None),
    "answer_p95_ms": ("answer p95", "ms", "", None),
    "answer_p50_cpu_ms": ("answer p50 CPU-Zeit", "ms", "", None),
    "peak_rss_mb": ("Spitzen-RSS (dieser Prozess)", "MB", "", None),
    "index_mb": ("Index auf der Platte (aktuelle Version)", "MB", "", None),
    "index_total_mb": ("  Ordner gesamt (mit Vorversion, Einbettungs-Cache)", "MB", "", None),
}

# The peak resident memory of the process since it started its program. Not ru_maxrss: Linux
# carries that over from the forked parent (a benchmark holding gigabytes would report them).
PEAK_RSS = """
def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

COLD_START = PEAK_RSS + """
import sys, time, json
t0 = time.perf_counter()
import rag
from rag.answering import answer
idx = rag.load_index(sys.argv[1])
t1 = time.perf_counter()
ans = answer(idx, sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_answer_s": t2 - t1, "answered_at": time.time(), "rss_mb": peak_rss_mb()}))
"""

NEW_ARTICLE = (
    "Wien – Die Stadt Wien eröffnet im Frühjahr eine neue Straßenbahnlinie zum Hauptbahnhof. "
    "Die Bauarbeiten dauerten knapp drei Jahre und kosteten rund 80 Millionen Euro. "
    "Die Linie soll täglich rund 40.000 Fahrgäste befördern und im Fünf-Minuten-Takt fahren."
)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _cpu() -> float:
    """CPU seconds of this process, all threads (ns resolution)."""
    return time.process_time()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _questions(n: int) -> list[str]:
    """Real German questions for latency runs (XQuAD-de if present, else generic ones)."""
    if DEFAULT_QA.exists():
        from .evaluation import load_qa

        qs = [item.question for item in load_qa(DEFAULT_QA)[0]]
    else:
        qs = ["Wie lange dauerte der Gipfel?", "Wer gewann die Wahl?", "Wann beginnt der Streik?"]
    return [qs[i % len(qs)] for i in range(n)]


def write_corpus(source: Path, dest: Path, limit: int | None) -> int:
    """Copy a folder, or turn a 10kGNAD CSV into one .txt per article, into `dest`."""
    from .errors import RagError
    from .evaluation import load_distractors

    source = Path(source)
    if not source.exists():
        raise RagError(f"Korpus nicht gefunden: {source}")
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(source).parts))
        files = files[: limit or None]
        for p in files:
            target = dest / p.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
        return len(files)
    docs = load_distractors(source, limit)
    for i, d in enumerate(docs):
        (dest / f"{i:05d}.txt").write_text(d.text, encoding="utf-8")
    return len(docs)


def _latencies(fn, questions: list[str], idx) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per call."""
    wall, cpu = [], []
    for q in questions:
        idx.clear_caches(["queries"])  # every call embeds its question
        t, c = time.perf_counter(), _cpu()
        fn(q)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((_cpu() - c) * 1000)
    return wall, cpu


def run_bench(
    corpus: str | Path = DEFAULT_CSV,
    limit: int | None = None,
    queries: int = 100,
    config: Config | None = None,
    echo: Callable[[str], None] = lambda s: None,
) -> dict:
    """Run every measurement on a private copy of `corpus` in a temporary folder; returns the figures.

    The keys are those of `FIELDS`; times in s or ms, sizes in MB (10⁶ bytes)."""
    from .chunking import chunk_document
    from .corpus import load_corpus
    from .embedding import load_embedder
    from .service import RagService
    from .store import build_index

    config = config or Config()
    queries = max(1, int(queries))
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        corpus_dir = work / "corpus"
        n_articles = write_corpus(Path(corpus), corpus_dir, limit)
        out: dict = {"articles": n_articles, "chunks": 0, "cpus": os.cpu_count(), "torch_threads": 0, "backend": "",
                     "load_avg_1m": round(os.getloadavg()[0], 2)}

        # Raw encoder throughput over exactly the texts the build will embed (unique chunk texts),
        # in one call: the model at its best (batches sorted by length over the whole set).
        echo("Modell laden …")
        embedder = load_embedder(config)
        embedder.embed_passages(["Aufwärmen."])
        out["backend"] = getattr(embedder.backend, "kind", type(embedder.backend).__name__)
        try:
            import torch

            out["torch_threads"] = torch.get_num_threads()
        except ImportError:  # pragma: no cover
            pass
        docs = load_corpus(corpus_dir).documents
        texts = list(dict.fromkeys(c.text for d in docs for c in chunk_document(d, config.chunk_size, config.chunk_overlap)))
        out["chunks"] = len(texts)
        echo(f"Rohes Einbetten von {len(texts)} Abschnitten …")
        t, c = time.perf_counter(), _cpu()
        embedder.embed_passages(texts)
        out["raw_encode_s"] = raw = time.perf_counter() - t
        out["raw_encode_cpu_s"] = _cpu() - c
        out["passages_per_s"] = len(texts) / raw

        # Full build: a fresh index folder, so nothing is cached.
        echo("Vollständiger Aufbau …")
        index_dir = work / "index"
        t, c = time.perf_counter(), _cpu()
        idx = build_index(corpus_dir, index_dir, config)
        out["build_s"] = time.perf_counter() - t
        out["build_cpu_s"] = _cpu() - c
        out["build_overhead"] = out["build_s"] / raw - 1
        out["build_overhead_cpu"] = out["build_cpu_s"] / out["raw_encode_cpu_s"] - 1

        echo("Aufbau ohne Änderung …")
        t, c = time.perf_counter(), _cpu()
        build_index(corpus_dir, index_dir, config)
        out["no_change_rebuild_s"] = time.perf_counter() - t
        out["no_change_rebuild_cpu_s"] = _cpu() - c

        echo("Ein Artikel dazu …")
        (corpus_dir / "zz-neu.txt").write_text(NEW_ARTICLE, encoding="utf-8")
        t, c = time.perf_counter(), _cpu()
        idx = build_index(corpus_dir, index_dir, config)
        out["add_one_article_s"] = time.perf_counter() - t
        out["add_one_article_cpu_s"] = _cpu() - c

        echo("Kaltstart …")
        qs = _questions(queries + 2)
        warm_q, cold_q, qs = qs[0], qs[1], qs[2:]
        # From starting the process to its first answer (its exit, which unloads torch, is not
        # waited for by a user): the child reports the wall-clock time it answered at.
        t, c = time.time(), _children_cpu()
        proc = subprocess.run(
            [sys.executable, "-c", COLD_START, str(index_dir), cold_q], capture_output=True, text=True,
        )
        out["cold_start_cpu_s"] = _children_cpu() - c
        if proc.returncode != 0:
            raise RuntimeError(f"Kaltstart-Prozess fehlgeschlagen:\n{proc.stderr[-2000:]}")
        cold = json.loads(proc.stdout.strip().splitlines()[-1])
        out.update(cold_start_s=cold["answered_at"] - t, cold_load_s=cold["load_s"], cold_first_answer_s=cold["first_answer_s"],
                   cold_rss_mb=cold["rss_mb"])

        echo(f"Latenz über {len(qs)} Fragen …")
        svc = RagService.of(idx)
        svc.answer(warm_q)  # warm-up: lazy tables, tokenizer, BM25 stemmer
        # The question's embedding alone, then retrieve, each question in turn: both see the same load.
        lat_e, lat_r, cpu_r = [], [], []
        for q in qs:
            e, _ = _latencies(lambda q: idx.embedder.embed_queries([q]), [q], idx)
            r, c = _latencies(lambda q: svc.retrieve(q, k=5), [q], idx)
            lat_e += e
            lat_r += r
            cpu_r += c
        lat_a, cpu_a = _latencies(lambda q: svc.answer(q, k=3), qs, idx)
        out.update(
            embed_p50_ms=statistics.median(lat_e), retrieve_over_embed=statistics.median(lat_r) / statistics.median(lat_e),
            retrieve_p50_ms=statistics.median(lat_r), retrieve_p95_ms=percentile(lat_r, 0.95),
            retrieve_p50_cpu_ms=statistics.median(cpu_r),
            answer_p50_ms=statistics.median(lat_a), answer_p95_ms=percentile(lat_a, 0.95),
            answer_p50_cpu_ms=statistics.median(cpu_a),
        )
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["index_mb"] = _dir_size(idx.version_dir) / 1e6
        out["index_total_mb"] = _dir_size(index_dir) / 1e6
        return {k: out[k] for k in FIELDS}
    finally:
        shutil.rmtree(work, ignore_errors=True)


HEADER_KEYS = ("articles", "chunks", "cpus", "torch_threads", "backend", "load_avg_1m")


def format_report(r: dict) -> str:
    """The figures as a table, each with its goal (issues #6 and #15) where it has one."""
    head = (f"{r['articles']} Artikel, {r['chunks']} Abschnitte, {r['cpus']} Kerne ({r['torch_threads']} torch-Threads), "
            f"Backend {r['backend']}, Systemlast {r['load_avg_1m']}")
    rows = [head]
    for key, (label, unit, goal, test) in FIELDS.items():
        if key in HEADER_KEYS:
            continue
        value = r[key]
        mark = f"   Ziel {goal}: {'ok' if test(value) else 'VERFEHLT'}" if test is not None else ""
        if unit == "×100 %":
            text = f"{100 * value:+8.1f} %"
        elif unit == "×":
            text = f"{value:8.2f} ×"
        else:
            text = f"{value:8.3f} {unit}" if unit in ("s",) else f"{value:8.1f} {unit}"
        rows.append(f"{label:<52} {text:<16}{mark}")
    return "\n".join(rows)
