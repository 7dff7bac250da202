"""How the trained reader is combined with the heuristic sentence scores, and where it abstains:
measured on the dev split of news-qa (all 1,028 10kGNAD articles indexed) and the seed questions.

    python bench/tune_reader.py candidates OUT.pkl        # retrieval + heuristic features, once
    python bench/tune_reader.py read OUT.pkl WEIGHTS_DIR CHARS  # reader margins → OUT.readCHARS.pkl
    python bench/tune_reader.py grid OUT.readCHARS.pkl          # combinations and thresholds

Not part of the product: it records how the defaults in `Config` were chosen.
"""
from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from rag.answering.candidates import embed_features
from rag.answering.phrases import question_type
from rag.answering.pipeline import gather
from rag.answering.reading import HeuristicReader
from rag.answering.scoring import HeuristicScorer
from rag.config import Config
from rag.evaluation import EVAL_DIR, build_eval_index, contains_answer, load_gnad, span_f1_em
from rag.reader.data import is_dev
from rag.retrieval import find_candidates

TOP = 16  # candidates read per question (the grid tries fewer)


def questions() -> list[dict]:
    out = []
    for line in open(EVAL_DIR / "news-qa.jsonl", encoding="utf-8"):
        q = json.loads(line)
        if is_dev(q["doc"], 0.2):
            out.append(q)
    return out


def candidates(out: Path) -> None:
    cfg = Config()
    index = build_eval_index(load_gnad(), config=cfg)
    rows = []
    t0 = time.time()
    for n, q in enumerate(questions()):
        found = find_candidates(index, q["question"])
        kind = question_type(found.question)
        cands = gather(index, found.question, found.passages, kind)
        embed_features(index, found.question, cands)
        for c, r in zip(cands, HeuristicReader(cfg)(found.question, cands, lambda d: index.documents[d].text)):
            c.span = r.span
        scores = HeuristicScorer(cfg)(found.question, cands)
        order = np.argsort(-scores, kind="stable")
        kept = []
        for i in order[:40]:
            c = cands[i]
            text = index.documents[c.doc_id].text
            kept.append({
                "doc": c.doc_id, "start": c.start, "end": c.end, "sentence": c.text, "heuristic": float(scores[i]),
                "evidence": c.dense + cfg.evidence_lexical_weight * c.lexical,
                "phrase": text[c.span[0] : c.span[1]] if c.span else None,
            })
        rows.append({"q": q, "question": found.question, "cands": kept})
        if n % 50 == 0:
            print(n, round(time.time() - t0, 1), flush=True)
    pickle.dump(rows, open(out, "wb"))


def read(path: Path, weights: Path, window_chars: int) -> None:
    """Margins and spans of the reader for the top candidates, windows planned as in the product."""
    from rag.answering.candidates import Candidate
    from rag.answering.neural import plan_windows
    from rag.reader.runtime import NeuralReader

    rows = pickle.load(open(path, "rb"))
    index = build_eval_index(load_gnad(), config=Config())
    reader = NeuralReader(weights, backend=Config().reader_backend)
    t0 = time.time()
    for n, row in enumerate(rows):
        top = row["cands"][:TOP]
        cands = [Candidate(c["doc"], c["start"], c["end"], c["sentence"], prior=0.0) for c in top]
        spans = plan_windows(index, cands, 1, window_chars)
        windows = [index.documents[c.doc_id].text[a:b] for c, (a, b) in zip(cands, spans)]
        focus = [(c.start - a, c.end - a) for c, (a, _) in zip(cands, spans)]
        for c, w, r in zip(top, windows, reader.read(row["question"], windows, focus=focus)):
            c["margin"] = r.margin
            c["span"] = w[r.span[0] : r.span[1]] if r.span else None
        if n % 50 == 0:
            print(n, round(time.time() - t0, 1), flush=True)
    print("seconds per question", (time.time() - t0) / len(rows))
    pickle.dump(rows, open(path.with_suffix(f".read{window_chars}.pkl"), "wb"))


def grid(path: Path) -> None:
    rows = pickle.load(open(path, "rb"))
    ans = [r for r in rows if r["q"]["answers"]]
    una = [r for r in rows if not r["q"]["answers"]]
    print(f"{len(ans)} answerable, {len(una)} unanswerable")

    def pick(row, top, w):
        cs = row["cands"][:top]
        return max(cs, key=lambda c: c["heuristic"] + w * c["margin"]) if w is not None else cs[0]

    def holds(r, t):
        return any(contains_answer(c["sentence"], r["q"]["answers"]) for c in r["cands"][:t])

    recall = {t: np.mean([holds(r, t) for r in ans]) for t in (1, 4, 8, 12, 16, 40)}
    print("sentence recall of the top-t heuristic candidates:", {t: round(v, 3) for t, v in recall.items()})
    for top in (4, 8, 12, 16):
        for w in (None, 0.01, 0.02, 0.05, 0.1, 0.2, 1000):
            hl = f1 = em = 0.0
            for r in ans:
                c = pick(r, top, w)
                hl += contains_answer(c["sentence"], r["q"]["answers"])
                phrase = c["span"] if w is not None else (c["phrase"] or c["sentence"])
                e, f = span_f1_em(phrase or "", r["q"]["answers"])
                em += e
                f1 += f
            n = len(ans)
            print(f"top={top:2d} w={w}: highlight {hl / n:.3f}  F1 {f1 / n:.3f}  EM {em / n:.3f}")
    # Abstention: the best margin among the read candidates.
    for top in (8, 12):
        best_a = np.array([max(c["margin"] for c in r["cands"][:top]) for r in ans])
        best_u = np.array([max(c["margin"] for c in r["cands"][:top]) for r in una])
        for t in np.arange(-4, 4.01, 0.5):
            print(f"top={top} threshold {t:+.1f}: unanswerable abstained {np.mean(best_u < t):.2f}, "
                  f"answerable abstained {np.mean(best_a < t):.3f}")


if __name__ == "__main__":
    cmd, path = sys.argv[1], Path(sys.argv[2])
    commands = {
        "candidates": lambda: candidates(path),
        "read": lambda: read(path, Path(sys.argv[3]), int(sys.argv[4])),
        "grid": lambda: grid(path),
    }
    commands[cmd]()
