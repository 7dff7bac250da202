"""Ray build against local build on the same articles (README, Scale): wall time, chunks, top-5.

    .venv/bin/python bench/ray_build.py [--limit 300] [--rounds 2]

Each build starts from an empty index folder (nothing cached); local and Ray builds alternate.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from rag.bench import DEFAULT_CSV, _questions, write_corpus
from rag.retrieval import retrieve
from rag.store import build_index


def spans(idx) -> list[tuple[str, int, int]]:
    return sorted((c.doc_id, c.start, c.end) for c in (idx.chunks[i] for i in idx.chunks))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--address", default="local")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rag-ray-"))
    try:
        write_corpus(DEFAULT_CSV, work / "corpus", args.limit)
        built, times = {}, {"local": [], "ray": []}
        for r in range(args.rounds):
            for name, address in (("local", None), ("ray", args.address)):
                root = work / f"{name}-{r}"
                t = time.perf_counter()
                built[name] = build_index(work / "corpus", root, ray_address=address)
                times[name].append(time.perf_counter() - t)
                print(name, f"{times[name][-1]:.1f} s", built[name].last_build.line(), flush=True)
        qs = _questions(100)
        same = sum(
            [(p.doc_id, p.start, p.end) for p in retrieve(built["local"], q, k=5)]
            == [(p.doc_id, p.start, p.end) for p in retrieve(built["ray"], q, k=5)]
            for q in qs
        )
        print(f"same chunks: {spans(built['local']) == spans(built['ray'])}; same top-5: {same} of {len(qs)}")
        print(f"wall time ray / local: {sum(times['ray']) / sum(times['local']):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
