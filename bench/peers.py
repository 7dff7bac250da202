"""rag beside Haystack 2 and txtai: build time, query latency and answer-in-top-1 on one corpus.

    make bench-peers                      # sets up bench/.venv-peers, then runs this file
    .venv/bin/python bench/peers.py --peers-python bench/.venv-peers/bin/python [--systems rag,haystack,txtai]

The corpus is the XQuAD-de paragraphs plus the first 300 10kGNAD articles as distractors, the
questions are XQuAD-de's. Every system sees the same texts:

- rag builds its index from the documents (its own chunking, BM25 and FAISS, files on disk);
- Haystack 2 (haystack-ai) gets rag's chunks as Documents: InMemoryDocumentStore,
  SentenceTransformers document/text embedders on the same local model folder, BM25 and embedding
  retrievers (top 50 each, like rag's candidates) joined by reciprocal rank fusion;
- txtai gets the same chunks: Embeddings(path=<model folder>, hybrid=True, content=True);
- rag is rag on its torch encoder (RAG_EMBED_BACKEND=torch); rag-onnx is rag as shipped, on the
  ONNX Runtime int8 encoder (exported once beforehand into the cache, so the export is not in the
  build time).

All use multilingual-e5-small with the prompts "passage: " / "query: ". Each system runs in its
own process (rag in the project's virtualenv, the peers in bench/.venv-peers): the build time runs
from the model folder on disk to a queryable index (libraries imported beforehand, model loading
included), query latency is one call returning the top 5 per question, query embedding included,
after a warm-up call. answer-in-top-1: the top-1 retrieved text contains an XQuAD answer (the
normalised substring match of `rag eval`). For rag it is given three ways: the top-1 chunk (the very
same unit the peers return), the top-1 passage of `Index.retrieve` (adjacent chunks merged, so up to
two chunks long) and the first quote of `Index.answer`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVAL = REPO / "eval"  # the repository's question sets and articles (eval/README.md)
K = 5
CANDIDATES = 50


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_queries(questions, search):
    """search(q) -> list of texts, best first. Returns (top1 texts, wall ms, cpu ms)."""
    search("Wer hat das gesagt?")  # warm-up
    tops, wall, cpu = [], [], []
    for q in questions:
        t, c = time.perf_counter(), time.process_time()
        texts = search(q)
        wall.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        tops.append(texts[0] if texts else "")
    return tops, wall, cpu


# ---------------------------------------------------------------- workers (one process each)


def worker_rag(data: dict, work: Path) -> dict:
    sys.path.insert(0, str(REPO))
    import faiss  # noqa: F401  (imports outside the timed part, as for the peers)
    import torch  # noqa: F401

    from rag.answering import answer
    from rag.config import Config
    from rag.retrieval import rank_chunks, retrieve
    from rag.store import build_index

    corpus = work / "rag-corpus"
    corpus.mkdir()
    with open(corpus / "documents.jsonl", "w", encoding="utf-8") as f:
        for d in data["documents"]:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    t = time.perf_counter()
    idx = build_index(corpus, work / "rag-index", Config())
    build_s = time.perf_counter() - t
    embedded = idx.last_build.embedded

    def search(q):
        idx.clear_caches(["queries"])  # every question pays for its embedding
        return [p.text for p in retrieve(idx, q, k=K)]

    tops, wall, cpu = _time_queries(data["questions"], search)
    chunk_tops = []
    for q in data["questions"]:
        ranked = rank_chunks(idx, q)
        chunk_tops.append(idx.chunks[ranked[0][0]].text if ranked else "")
    answer_tops = []
    for i in data["answer_indices"]:
        q = data["questions"][i]
        ans = answer(idx, q, k=K)
        answer_tops.append("" if ans.abstained or not ans.passages else ans.passages[0].text)
    return {"build_s": build_s, "embedded": embedded, "top1": chunk_tops, "retrieve_top1": tops, "answer_top1": answer_tops,
            "wall_ms": wall, "cpu_ms": cpu, "rss_mb": _rss_mb()}


def worker_haystack(data: dict, work: Path) -> dict:
    import torch  # noqa: F401
    from haystack import Document, Pipeline
    from haystack.components.embedders import SentenceTransformersDocumentEmbedder, SentenceTransformersTextEmbedder
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice

    model = data["model_dir"]
    cpu = ComponentDevice.from_str("cpu")
    t = time.perf_counter()
    store = InMemoryDocumentStore()
    doc_embedder = SentenceTransformersDocumentEmbedder(
        model=model, device=cpu, prefix="passage: ", batch_size=32, progress_bar=False, normalize_embeddings=True,
        local_files_only=True,
    )
    doc_embedder.warm_up()
    docs = [Document(id=str(c["id"]), content=c["text"], meta={"doc_id": c["doc_id"]}) for c in data["chunks"]]
    store.write_documents(doc_embedder.run(documents=docs)["documents"])
    build_s = time.perf_counter() - t

    pipe = Pipeline()
    pipe.add_component("text_embedder", SentenceTransformersTextEmbedder(
        model=model, device=cpu, prefix="query: ", progress_bar=False, normalize_embeddings=True, local_files_only=True))
    pipe.add_component("embedding_retriever", InMemoryEmbeddingRetriever(document_store=store, top_k=CANDIDATES))
    pipe.add_component("bm25_retriever", InMemoryBM25Retriever(document_store=store, top_k=CANDIDATES))
    pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=K))
    pipe.connect("text_embedder.embedding", "embedding_retriever.query_embedding")
    pipe.connect("embedding_retriever", "joiner")
    pipe.connect("bm25_retriever", "joiner")
    pipe.warm_up()

    def search(q):
        out = pipe.run({"text_embedder": {"text": q}, "bm25_retriever": {"query": q}})
        return [d.content for d in out["joiner"]["documents"]]

    tops, wall, cpu_ms = _time_queries(data["questions"], search)
    return {"build_s": build_s, "embedded": len(docs), "top1": tops, "wall_ms": wall, "cpu_ms": cpu_ms, "rss_mb": _rss_mb()}


def worker_txtai(data: dict, work: Path) -> dict:
    import sentence_transformers  # noqa: F401
    import torch  # noqa: F401
    from txtai import Embeddings

    t = time.perf_counter()
    emb = Embeddings(
        path=data["model_dir"], method="sentence-transformers", content=True, hybrid=True,
        instructions={"query": "query: ", "data": "passage: "}, batch=32, encodebatch=32,
    )
    emb.index([{"id": str(c["id"]), "text": c["text"]} for c in data["chunks"]])
    build_s = time.perf_counter() - t

    def search(q):
        return [r["text"] for r in emb.search(q, K)]

    tops, wall, cpu = _time_queries(data["questions"], search)
    return {"build_s": build_s, "embedded": len(data["chunks"]), "top1": tops, "wall_ms": wall, "cpu_ms": cpu, "rss_mb": _rss_mb()}


WORKERS = {"rag": worker_rag, "rag-onnx": worker_rag, "haystack": worker_haystack, "txtai": worker_txtai}


def _versions(system: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = {"rag": ["torch", "faiss-cpu", "bm25s"], "rag-onnx": ["onnxruntime", "faiss-cpu", "bm25s"],
             "haystack": ["haystack-ai", "sentence-transformers", "torch"],
             "txtai": ["txtai", "sentence-transformers", "torch", "faiss-cpu"]}[system]
    out = []
    for n in names:
        try:
            out.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def run_worker(system: str, data_path: Path, out_path: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # rag-onnx is rag's default (ONNX Runtime int8 encoder, exported beforehand); rag = the torch encoder.
    os.environ["RAG_EMBED_BACKEND"] = "onnx-int8" if system == "rag-onnx" else "torch"
    data = json.loads(data_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix=f"peers-{system}-") as work:
        result = WORKERS[system](data, Path(work))
    result["versions"] = _versions(system)
    out_path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")


# ---------------------------------------------------------------- driver (project virtualenv)


def prepare(qa: Path, distractors: Path, limit: int, answer_questions: int | None) -> tuple[dict, list]:
    sys.path.insert(0, str(REPO))
    from rag.chunking import chunk_document
    from rag.config import Config
    from rag.e5model import ensure_e5_model_dir
    from rag.evaluation import load_distractors, load_qa

    cfg = Config()
    items, docs = load_qa(qa)
    docs = list(docs or []) + load_distractors(distractors, limit)
    items = [it for it in items if it.answerable]
    chunks = []
    for d in docs:
        for c in chunk_document(d, cfg.chunk_size, cfg.chunk_overlap):
            chunks.append({"id": len(chunks), "doc_id": d.id, "text": c.text})
    data = {
        "model_dir": str(ensure_e5_model_dir()),
        "documents": [{"id": d.id, "text": d.text, "title": d.title, "date": d.date, "source": d.source, "url": d.url} for d in docs],
        "chunks": chunks,
        "questions": [it.question for it in items],
        "answer_indices": _spread(len(items), answer_questions),
    }
    return data, items


def _spread(n: int, m: int | None) -> list[int]:
    """m indices spread evenly over range(n) (XQuAD's questions come grouped by article)."""
    if m is None or m >= n:
        return list(range(n))
    return [int(i * n / m) for i in range(m)]


def score(tops: list[str], items) -> float:
    from rag.evaluation import contains_answer

    return sum(contains_answer(t, it.answers) for t, it in zip(tops, items)) / len(tops) if tops else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"), help="interpreter with haystack-ai and txtai")
    ap.add_argument("--systems", default="rag,rag-onnx,haystack,txtai")
    ap.add_argument("--qa", default=str(EVAL / "xquad-de-dev.json"))
    ap.add_argument("--distractors", default=str(EVAL / "data" / "10kGNAD-test.csv"))
    ap.add_argument("--limit", type=int, default=300, help="distractor articles")
    ap.add_argument("--answer-questions", type=int, default=100,
                    help="questions (spread over the set) for rag's answer-quote top-1; 0 = all")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        run_worker(args.worker, Path(args.data), Path(args.out))
        return 0

    data, items = prepare(Path(args.qa), Path(args.distractors), args.limit, args.answer_questions or None)
    from rag.evaluation import percentile  # the project's virtualenv (prepare put the repository on the path)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: dict = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        data_path = Path(tmp) / "data.json"
        data_path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        for system in systems:
            python = sys.executable if system.startswith("rag") else args.peers_python
            out_path = Path(tmp) / f"{system}.json"
            print(f"{system} …", file=sys.stderr, flush=True)
            t = time.perf_counter()
            proc = subprocess.run([python, __file__, "--worker", system, "--data", str(data_path), "--out", str(out_path)])
            if proc.returncode != 0:
                print(f"{system}: worker failed (exit {proc.returncode})", file=sys.stderr)
                continue
            r = json.loads(out_path.read_text(encoding="utf-8"))
            row = {
                "build_s": r["build_s"],
                "passages_per_s": r["embedded"] / r["build_s"],
                "query_p50_ms": statistics.median(r["wall_ms"]),
                "query_p95_ms": percentile(r["wall_ms"], 0.95),
                "query_p50_cpu_ms": statistics.median(r["cpu_ms"]),
                "top1": score(r["top1"], items),
                "rss_mb": r["rss_mb"],
                "process_s": time.perf_counter() - t,
                "versions": r["versions"],
            }
            if system.startswith("rag"):
                row["retrieve_top1"] = score(r["retrieve_top1"], items)
                row["answer_top1"] = score(r["answer_top1"], [items[i] for i in data["answer_indices"]])
                subset = data["answer_indices"]
                row["retrieve_top1_same_subset"] = score([r["retrieve_top1"][i] for i in subset], [items[i] for i in subset])
                row["answer_questions"] = len(r["answer_top1"])
            results[system] = row
    meta = {
        "chunks": len(data["chunks"]), "documents": len(data["documents"]), "questions": len(data["questions"]),
        "cpus": os.cpu_count(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False))
        return 0
    print(f"{meta['documents']} Dokumente ({meta['chunks']} Abschnitte), {meta['questions']} Fragen (XQuAD-de), "
          f"{meta['cpus']} Kerne, Systemlast {meta['load_avg_1m_before']} → {meta['load_avg_1m_after']}")
    print(f"{'system':<10} {'Aufbau s':>9} {'Abschn./s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p50 CPU ms':>10} {'top-1':>7} {'RSS MB':>7}")
    for name, r in results.items():
        print(f"{name:<10} {r['build_s']:9.1f} {r['passages_per_s']:9.1f} {r['query_p50_ms']:8.1f} {r['query_p95_ms']:8.1f} "
              f"{r['query_p50_cpu_ms']:10.1f} {100 * r['top1']:6.1f}% {r['rss_mb']:7.0f}")
    for rag_name in [n for n in results if n.startswith("rag")]:
        r = results[rag_name]
        print(f"{rag_name}: top-1 passage of retrieve {100 * r['retrieve_top1']:.1f} %, first answer quote "
              f"{100 * r['answer_top1']:.1f} % on {r['answer_questions']} questions spread over the set "
              f"(top-1 passage on those: {100 * r['retrieve_top1_same_subset']:.1f} %)")
        for name, p in results.items():
            if not name.startswith("rag"):
                print(f"{rag_name} vs {name}: query latency ×{p['query_p50_ms'] / r['query_p50_ms']:.1f} lower "
                      f"(CPU ×{p['query_p50_cpu_ms'] / r['query_p50_cpu_ms']:.1f}), build ×{p['build_s'] / r['build_s']:.2f} faster")
    for name, r in results.items():
        print(f"{name}: {r['versions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
