"""The trained reader: training code (a few steps on a few examples), the shipped weights, and
reading windows with the real network."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rag.reader.data import EVAL_DIR, QAExample, is_dev, load_examples, windows_for
from rag.reader.train import WEIGHTS_DIR, TrainSettings, run

pytestmark = pytest.mark.slow

TINY = TrainSettings(langs=("de",), limit=6, epochs=6, trainable_layers=1, lr=5e-4, head_lr=5e-3, batch=8, negatives=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader")
    manifest = run(TINY, out_dir=out, log=lambda *_: None)
    return out, manifest


def test_training_a_few_steps_lowers_the_loss_and_writes_weights_with_a_manifest(tiny_run):
    out, manifest = tiny_run
    assert manifest["loss"]["last"] < manifest["loss"]["first"]
    data = (out / "reader.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["weights_sha256"]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["settings"]["trainable_layers"] == 1 and saved["training_data"].startswith("sha256:")
    assert set(saved["dev"]["all"]) >= {"exact_match", "f1", "abstained_unanswerable"}


def test_training_is_deterministic_for_a_seed(tiny_run, tmp_path):
    _, first = tiny_run
    again = run(TINY, out_dir=tmp_path, log=lambda *_: None)
    assert again["weights_sha256"] == first["weights_sha256"]


def test_split_keeps_every_article_and_all_its_translations_on_one_side():
    examples = load_examples(("de", "en"))
    sides: dict[str, set[bool]] = {}
    for ex in examples:
        sides.setdefault(ex.group, set()).add(is_dev(ex.group, 0.2))
    assert all(len(s) == 1 for s in sides.values())
    dev = [g for g, s in sides.items() if True in s]
    assert 0.1 < len(dev) / len(sides) < 0.3


def test_windows_label_the_answer_span_and_negatives_never_hold_the_answer():
    import random

    text = "Der Gipfel begann am Morgen. Er dauerte rund zwei Stunden. Danach gab es Kaffee. Am Abend flog Biden ab. Putin blieb."
    start = text.index("rund zwei Stunden")
    ex = QAExample("q", "g", "Wie lange dauerte der Gipfel?", text, (start, start + len("rund zwei Stunden")))
    windows = list(windows_for(ex, random.Random(0), negatives=2))
    positives = [w for w in windows if w.answer]
    assert positives and all(w.text[slice(*w.answer)] == "rund zwei Stunden" for w in positives)
    assert all("zwei Stunden" not in w.text for w in windows if w.answer is None)


def test_shipped_weights_are_small_and_match_their_manifest():
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    data = (WEIGHTS_DIR / "reader.safetensors").read_bytes()
    assert len(data) <= 25 * 1024 * 1024
    assert hashlib.sha256(data).hexdigest() == manifest["weights_sha256"]
    assert manifest["dev"]["news"]["f1"] > 0.5  # a reader that learned nothing scores near 0


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_shipped_reader_finds_the_answer_in_its_window(backend):
    from rag.reader.runtime import NeuralReader

    reader = NeuralReader(WEIGHTS_DIR, backend=backend)
    windows = [
        "Moskau - Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden, wie Agenturen meldeten.",
        "Die Börse in Wien schloss am Dienstag etwas fester. Der ATX stieg um 0,4 Prozent.",
    ]
    answer, other = reader.read("Wie lange dauerte der Videogipfel?", windows)
    assert windows[0][slice(*answer.span)] in ("rund zwei Stunden", "zwei Stunden")
    assert answer.margin > other.margin


def test_evaluation_data_is_in_the_repository():
    assert EVAL_DIR == Path(__file__).resolve().parent.parent / "eval"
    assert (EVAL_DIR / "news-qa.jsonl").is_file() and (EVAL_DIR / "data" / "10kGNAD-test.csv").is_file()
