"""The trained reader: the shared-norm loss on a tiny network, the training data as the answer stage
reads it, the combiner and its threshold, a tiny real training run, and the shipped weights."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

from rag.answering.calibration import FEATURES
from rag.reader.calibrate import BASE_FEATURES, QuestionReading, choose_threshold, fit_combiner
from rag.reader.data import EVAL_DIR, QAExample, load_examples, plan_question
from rag.reader.model import Encoded
from rag.reader.split import is_calibration, is_dev
from rag.reader.train import WEIGHTS_DIR, TrainSettings, WindowItem, run, train

# ---------------------------------------------------------------- the loss, on a tiny network


class TinyNet:
    """One linear layer and a span head over fixed token states: enough to learn which tokens
    start and end an answer."""

    def __init__(self, dim: int = 32):
        import torch

        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(dim, dim)])
        self.head = torch.nn.Linear(dim, 2)
        self.split = 0

    def upper(self, x, mask):
        import torch

        return self.head(torch.tanh(self.layers[0](x)))

    def train(self):
        pass

    def eval(self):
        pass


def _window(question: int, n: int, gold: tuple[int, int] | None, rng: np.random.Generator, answerable: bool = True) -> WindowItem:
    import torch

    # Positions: 0 = "no answer", 1–2 = the question, 3 … n−2 = the window's tokens, n−1 = </s>.
    enc = Encoded(list(range(n)), 3, [(i, i + 1) for i in range(n - 4)])
    none = () if answerable else (0,)  # an unanswerable question's gold is "no answer" in every window
    item = WindowItem(question, enc, (gold[0],) if gold else none, (gold[1],) if gold else none)
    item.states = torch.tensor(rng.normal(size=(n, 32)), dtype=torch.float16)
    return item


def _scores(net, w: WindowItem) -> tuple[float, float]:
    """(best span score, "no answer" score) of a window after training."""
    import torch

    with torch.no_grad():
        out = net.upper(w.states.float()[None], None)[0].numpy()
    s, e = out[:, 0], out[:, 1]
    first, last = w.enc.first, len(w.enc.ids) - 2
    best = max(s[i] + e[j] for i in range(first, last + 1) for j in range(i, last + 1))
    return float(best), float(s[0] + e[0])


def test_shared_norm_loss_lets_the_answer_window_win_and_pushes_unanswerable_questions_to_no_answer():
    rng = np.random.default_rng(0)
    # Question 0: its answer (tokens 5–6) is in its second window only; question 1 has no answer.
    q0 = [_window(0, 12, None, rng), _window(0, 12, (5, 6), rng)]
    q1 = [_window(1, 12, None, rng, answerable=False), _window(1, 12, None, rng, answerable=False)]
    net = TinyNet()
    losses = train(net, [q0, q1], TrainSettings(epochs=300, questions_per_batch=2, lr=0.05, head_lr=0.05, warmup=0.0), lambda *_: None)
    assert losses[-1] < losses[0] / 5
    (no_best, _), (yes_best, yes_null) = _scores(net, q0[0]), _scores(net, q0[1])
    assert yes_best > no_best and yes_best > yes_null  # the window that holds the answer wins
    for w in q1:
        best, null = _scores(net, w)
        assert null > best  # every window of the unanswerable question says "no answer"


# ---------------------------------------------------------------- data


def test_split_keeps_every_article_and_all_its_translations_on_one_side():
    examples, docs = load_examples(("de", "en"))
    sides: dict[str, set[tuple[bool, bool]]] = {}
    for ex in examples:
        sides.setdefault(ex.group, set()).add((is_dev(ex.group, 0.2), is_calibration(ex.group)))
    assert all(len(s) == 1 for s in sides.values())
    dev = [g for g, s in sides.items() if (True, False) in s or (True, True) in s]
    assert 0.1 < len(dev) / len(sides) < 0.3
    assert {d.id.split("/")[0] for d in docs if d.id.startswith("xquad")} == {"xquad-de", "xquad-en"}
    assert sum(1 for e in examples if e.source == "news" and not e.answers) > 1500  # news-qa-2's near-misses are in


def test_planned_windows_are_what_the_answer_stage_reads_with_gold_spans_only_in_the_own_article(fake_seed_index):
    from rag.answering.pipeline import planned_windows

    idx = fake_seed_index
    doc = next(d for d in idx.documents if "rund zwei Stunden" in idx.documents[d].text)
    q = "Wie lange dauerte der Videogipfel zwischen Biden und Putin?"
    pq = plan_question(idx, QAExample("q", doc, "news", q, ("rund zwei Stunden",), doc), max_windows=16)
    assert [(w.doc_id, w.start, w.end) for w in pq.windows][: len(planned_windows(idx, q))] == planned_windows(idx, q)[:16]
    golds = [w for w in pq.windows if w.gold]
    assert golds and all(w.doc_id == doc for w in golds)
    for w in golds:
        text = idx.documents[doc].text[w.start : w.end]
        assert all(text[a:b] == "rund zwei Stunden" for a, b in w.gold)
    # Unanswerable: no gold anywhere; an answer not in its article: no training question.
    assert not any(w.gold for w in plan_question(idx, QAExample("u", doc, "news", q, (), doc), 16).windows)
    assert plan_question(idx, QAExample("x", doc, "news", q, ("dreieinhalb Tage",), doc), 16) is None


# ---------------------------------------------------------------- combiner and threshold


def _reading(source: str, answerable: bool, good: float, rng: random.Random) -> QuestionReading:
    """Three read sentences; the first holds the answer when answerable, and its reader
    log-probability is `good` (the others −6)."""
    x = np.zeros((3, len(FEATURES)))
    x[:, FEATURES.index("log_prob")] = [good, -6.0, -6.0]
    x[:, FEATURES.index("prior")] = [rng.random() for _ in range(3)]
    ex = QAExample(f"{source}-{rng.random()}", "g", source, "q", ("Wien",) if answerable else (), "d")
    return QuestionReading(ex, x, np.array([answerable, False, False]), ["Wien", "Graz", "Linz"])


def test_combiner_is_fitted_on_calibration_questions_and_the_threshold_meets_the_dev_target():
    rng = random.Random(0)
    calib = [_reading("news", True, rng.uniform(-2, 0), rng) for _ in range(60)]
    calib += [_reading("news", False, rng.uniform(-9, -4), rng) for _ in range(60)]
    dev = [_reading("news", True, rng.uniform(-2.5, 0), rng) for _ in range(100)]
    dev += [_reading("news", False, rng.uniform(-9, -3), rng) for _ in range(50)]
    combiner, figures = fit_combiner(calib, dev, TrainSettings(target_abstained=0.03).abstention_targets)
    assert combiner.coef[FEATURES.index("log_prob")] > 0  # a surer reader means a likelier answer
    news = figures["news"]
    assert news["abstained_answerable"] <= 0.03 and news["abstained_unanswerable"] > 0.8
    assert news["best_sentence_holds_answer"] == 1.0 and news["f1"] > 0.95
    assert set(news["risk_coverage"]) == {"100%", "90%", "80%", "70%"}


def test_off_topic_questions_are_german_xquad_questions_the_corpus_cannot_answer():
    from rag.reader.train import off_topic

    asked = [QAExample("x1", "a", "xquad-de", "Wer baute die Brücke?", ("Eiffel",), "xquad-de-1"),
             QAExample("x2", "a", "xquad-en", "Who built it?", ("Eiffel",), "xquad-en-1"),
             QAExample("n1", "g", "news", "Wer gewann?", ("Rapid",), "gnad-0001")]
    (off,) = off_topic(asked)
    assert (off.qid, off.source, off.answers, off.question) == ("x1", "off-topic", (), "Wer baute die Brücke?")


def test_threshold_abstains_on_at_most_the_target_share():
    conf = [i / 100 for i in range(100)]
    t = choose_threshold(conf, 0.03)
    assert sum(c < t for c in conf) == 3


# ---------------------------------------------------------------- a real (tiny) run and the shipped weights

TINY = TrainSettings(langs=("de",), limit=5, epochs=2, trainable_layers=1, lr=5e-4, head_lr=5e-3, questions_per_batch=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader")
    manifest = run(TINY, out_dir=out, log=lambda *_: None, cache_dir=tmp_path_factory.mktemp("cache"))
    return out, manifest


@pytest.mark.slow
def test_training_writes_weights_with_a_manifest_its_combiner_and_threshold(tiny_run):
    out, manifest = tiny_run
    data = (out / "reader.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["weights_sha256"]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["settings"]["trainable_layers"] == 1 and saved["training_data"].startswith("sha256:")
    assert saved["combiner"]["features"] == list(BASE_FEATURES) and 0.0 <= saved["combiner"]["threshold"] <= 1.0
    assert {"best_sentence_holds_answer", "f1", "abstained_unanswerable", "risk_coverage"} <= set(saved["dev"]["news"])


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(tiny_run, tmp_path):
    _, first = tiny_run
    again = run(TINY, out_dir=tmp_path, log=lambda *_: None, cache_dir=tmp_path / "cache")
    assert again["weights_sha256"] == first["weights_sha256"]


def test_shipped_weights_are_small_and_match_their_manifest():
    manifest = json.loads((WEIGHTS_DIR / "manifest.json").read_text())
    data = (WEIGHTS_DIR / "reader.safetensors").read_bytes()
    assert len(data) <= 25 * 1024 * 1024
    assert hashlib.sha256(data).hexdigest() == manifest["weights_sha256"]
    assert manifest["dev"]["news"]["f1"] > 0.5  # a reader that learned nothing scores near 0
    assert manifest["combiner"]["features"] and 0.0 < manifest["combiner"]["threshold"] < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_shipped_reader_scores_the_answering_window_above_the_other(backend):
    from rag.answering.neural import shared_norm
    from rag.reader.runtime import NeuralReader

    reader = NeuralReader(WEIGHTS_DIR, backend=backend)
    windows = [
        "Moskau - Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden, wie Agenturen meldeten.",
        "Die Börse in Wien schloss am Dienstag etwas fester. Der ATX stieg um 0,4 Prozent.",
    ]
    answer, other = reader.read("Wie lange dauerte der Videogipfel?", windows)
    assert windows[0][slice(*answer.span)] in ("rund zwei Stunden", "zwei Stunden")
    (p_answer, p_other), p_null = shared_norm([answer, other], [0, 1])
    assert p_answer > max(p_other, p_null)


def test_evaluation_data_is_in_the_repository():
    assert EVAL_DIR == Path(__file__).resolve().parent.parent / "eval"
    for name in ("news-qa.jsonl", "news-qa-2.jsonl", "data/10kGNAD-test.csv"):
        assert (EVAL_DIR / name).is_file()


def test_a_span_never_contains_a_blocked_token():
    from rag.reader.model import best_span

    start = np.array([0.0, 5.0, 1.0, 0.0, 2.0])
    end = np.array([0.0, 1.0, 5.0, 0.0, 2.0])
    assert best_span(start, end, 1, 4, 3)[:2] == (1, 2)  # the best pair, unblocked
    blocked = np.array([False, True, False, False])  # token 2 is an earlier answer
    a, z, score = best_span(start, end, 1, 4, 3, blocked)
    assert not (a <= 2 <= z) and (a, z) == (1, 1) and score == 6.0
    assert best_span(start, end, 1, 4, 3, np.ones(4, dtype=bool))[2] == float("-inf")


@pytest.mark.slow
def test_the_reader_gives_its_next_answer_when_the_earlier_one_is_avoided():
    from rag.answering.neural import shared_norm
    from rag.reader.runtime import NeuralReader

    reader = NeuralReader(WEIGHTS_DIR)
    window = "Der Videogipfel zwischen Biden und Putin dauerte rund zwei Stunden, wie Agenturen am Abend meldeten."
    question = "Wie lange dauerte der Videogipfel?"
    free = reader.read(question, [window])[0]
    said = free.span
    assert "zwei Stunden" in window[slice(*said)]
    held = reader.read(question, [window], avoid=[[said]])[0]
    assert held.span is not None and (held.span[1] <= said[0] or held.span[0] >= said[1])
    # The avoided answer leaves the normalisation too: what remains is not squeezed by it.
    assert shared_norm([held], [0])[0][0] > shared_norm([free], [0])[0][0] + (held.score - free.score)
