"""Learning curve of the reader, and other variants on the same data: one reader per share of the
news training articles (XQuAD kept whole) and per extra setting, the frozen layers' output computed
once for all readers with the same number of trainable layers, each with its own combiner and
threshold; their dev figures side by side (README, The reader).

    python bench/reader_curve.py --shares 1.0 0.25 0.5 --out artifacts/curve [--layers 4] [--epochs 1]
        [--also news=0.25,epochs=2 …]

Takes about as long as the trainings' epochs plus one pass of the frozen layers and ≈ 10 minutes
of dev and calibration reading per reader.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rag.reader.train import TrainSettings, train_variants

KEYS = {"news": ("news_share", float), "epochs": ("epochs", int), "lr": ("lr", float), "layers": ("trainable_layers", int)}


def variant(base: TrainSettings, spec: str) -> tuple[str, TrainSettings]:
    """'news=0.25,epochs=2' → ('news-025-epochs-2', settings)."""
    changes, name = {}, []
    for part in spec.split(","):
        key, value = part.split("=")
        field, kind = KEYS[key]
        changes[field] = kind(value)
        name.append(f"{key}-{round(float(value) * 100):03d}" if key == "news" else f"{key}-{value}")
    return "-".join(name), dataclasses.replace(base, **changes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.25, 0.5])
    ap.add_argument("--also", nargs="*", default=[], help="further variants, e.g. news=0.25,epochs=2")
    ap.add_argument("--out", type=Path, default=Path("artifacts/curve"))
    ap.add_argument("--layers", type=int, default=TrainSettings.trainable_layers)
    ap.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    ap.add_argument("--langs", default=",".join(TrainSettings.langs))
    args = ap.parse_args()
    base = dataclasses.replace(TrainSettings(), trainable_layers=args.layers, epochs=args.epochs, langs=tuple(args.langs.split(",")))
    variants = [variant(base, f"news={s}") for s in args.shares] + [variant(base, spec) for spec in args.also]
    results = train_variants(variants, args.out)
    rows = [
        "| reader | questions | windows | best sentence holds answer (reader alone) | F1 | abstained (answerable / unanswerable) | min |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in results.items():
        d = m["dev"]["news"]
        rows.append(
            f"| {name} | {m['train_questions']} | {m['train_windows']} | {d['best_sentence_holds_answer']:.3f} "
            f"({d['reader_alone_holds_answer']:.3f}) | {d['f1']:.3f} | {d['abstained_answerable']:.1%} / "
            f"{d['abstained_unanswerable']:.1%} | {m['seconds'] / 60:.0f} |"
        )
    table = "\n".join(rows)
    print(table)
    (args.out / "curve.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "curve.json").write_text(json.dumps({k: v["dev"] for k, v in results.items()}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
