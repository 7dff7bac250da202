"""Which features the combiner should weigh: a trained reader reads the calibration and dev questions
once (cached), then a combiner is fitted per feature set and its dev figures are printed (README,
The reader). With `--ship`, the chosen set's combiner and threshold are written into the reader's
manifest (its weights untouched).

    python bench/combiner_features.py --reader rag/reader/weights [--cache artifacts/readings.pkl] [--ship base]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
from pathlib import Path

from rag.answering.calibration import FEATURES
from rag.config import Config
from rag.reader.calibrate import BASE_FEATURES, fit_combiner, read_questions
from rag.reader.data import load_examples
from rag.reader.train import TrainSettings, split, write_manifest

SETS = {
    "reader": ("log_prob", "log_prob_null", "gap", "margin"),
    "round-2": ("log_prob", "log_prob_null", "gap", "margin", "prior", "doc_rank", "lexical", "typed", "typed_span", "position"),
    "base": BASE_FEATURES,
    "base+dense": FEATURES,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--ship", choices=sorted(SETS), default=None)
    args = ap.parse_args()
    manifest = json.loads((args.reader / "manifest.json").read_text(encoding="utf-8"))
    settings = TrainSettings(**{**manifest["settings"], "langs": tuple(manifest["settings"]["langs"])})
    cache = args.cache or args.reader / "readings.pkl"
    if cache.exists():
        calib, dev = pickle.loads(cache.read_bytes())
    else:
        from rag.evaluation import build_eval_index
        from rag.reader.runtime import NeuralReader

        examples, docs = load_examples(settings.langs)
        _, calib_ex, dev_ex = split(examples, dataclasses.replace(settings, news_share=1.0))
        index = build_eval_index(docs, None, Config())
        reader = NeuralReader(args.reader)
        calib = read_questions(index, reader, calib_ex, "Kalibrierung")
        dev = read_questions(index, reader, dev_ex, "Dev")
        cache.write_bytes(pickle.dumps((calib, dev)))
    print("| features | best sentence (news) | F1 | abstained answerable / unanswerable | XQuAD-de best sentence | F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    fitted = {}
    for name, feats in SETS.items():
        combiner, figures = fit_combiner(calib, dev, settings.abstention_targets, feats)
        fitted[name] = (combiner, figures)
        n, x = figures["news"], figures.get("xquad-de", {})
        print(
            f"| {name} | {n['best_sentence_holds_answer']:.3f} | {n['f1']:.3f} | {n['abstained_answerable']:.1%} / "
            f"{n['abstained_unanswerable']:.1%} | {x.get('best_sentence_holds_answer', 0):.3f} | {x.get('f1', 0):.3f} |"
        )
    # A non-linear combiner for comparison (not shippable as it is: the runtime applies a logistic regression).
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    from rag.reader.calibrate import choose_threshold, dev_figures

    gbm = HistGradientBoostingClassifier(max_iter=200, max_leaf_nodes=15, learning_rate=0.1, random_state=0)
    gbm.fit(np.concatenate([r.features for r in calib]), np.concatenate([r.holds for r in calib]))
    best = []
    for r in dev:
        p = gbm.predict_proba(r.features)[:, 1] if len(r.features) else np.zeros(0)
        best.append((float(p.max()), int(p.argmax())) if len(p) else (0.0, None))
    news = [(r, b) for r, b in zip(dev, best) if r.example.source == "news"]
    t = choose_threshold([b[0] for r, b in news if r.example.answers], settings.target_abstained)
    n = dev_figures([r for r, _ in news], [b for _, b in news], t)
    print(f"| gradient boosting, all | {n['best_sentence_holds_answer']:.3f} | {n['f1']:.3f} | {n['abstained_answerable']:.1%} / "
          f"{n['abstained_unanswerable']:.1%} | | |")
    if args.ship:
        combiner, figures = fitted[args.ship]
        manifest["combiner"] = combiner.to_dict()
        manifest["dev"] = figures
        write_manifest(args.reader, manifest)
        print(f"combiner „{args.ship}“ written to {args.reader / 'manifest.json'}")


if __name__ == "__main__":
    main()
