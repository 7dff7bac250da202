"""The model reader's plumbing: which sentences it reads, how its spans and margins enter the
ranking and the abstention. A stub network stands in for the trained one (answer quality is
tested with the shipped weights in test_reader.py and test_answering.py)."""
from __future__ import annotations

import numpy as np
import pytest

from rag.answering import answer
from rag.answering.candidates import Candidate
from rag.answering.evidence import Evidence, abstains, weigh
from rag.answering.neural import CombinedScorer, ModelReader
from rag.answering.scoring import HeuristicScorer, make_scorer
from rag.config import Config
from rag.reader.runtime import WindowReading


class StubNetwork:
    """Marks the word „Stunden“ (with the word before it) wherever the focus holds it, margin 3;
    elsewhere no span and margin −2. Records what it was asked to read."""

    fingerprint = "stub"

    def __init__(self):
        self.windows: list[str] = []

    def read(self, question, windows, focus=None):
        self.windows += list(windows)
        out = []
        for w, (fs, fe) in zip(windows, focus):
            at = w.find("Stunden", fs, fe)
            if at < 0:
                out.append(WindowReading(None, -2.0))
                continue
            start = w.rfind(" ", fs, at - 1) + 1
            out.append(WindowReading((start, at + len("Stunden")), 3.0))
        return out


class Docs:
    def __init__(self, texts: dict[str, str]):
        from rag.text import split_sentences

        self.documents = {k: type("D", (), {"text": v})() for k, v in texts.items()}
        self._sents = {k: split_sentences(v) for k, v in texts.items()}

    def sentences(self, doc_id):
        return self._sents[doc_id]


TEXT = "Der Gipfel begann am Morgen. Er dauerte zwei Stunden. Danach sprach Biden. Putin flog heim."


def _cands(docs: Docs, dense: list[float]) -> list[Candidate]:
    out = []
    for (s, e), d in zip(docs.sentences("a"), dense):
        c = Candidate("a", s, e, TEXT[s:e], prior=1.0)
        c.dense = d
        out.append(c)
    return out


def test_model_reader_reads_only_the_best_candidates_each_with_its_neighbours():
    docs = Docs({"a": TEXT})
    net = StubNetwork()
    cfg = Config(reader_top=2, reader_context=1, reader_window_chars=0)
    cands = _cands(docs, [0.9, 0.8, 0.1, 0.1])
    readings = ModelReader(cfg, model=net)("Wie lange dauerte der Gipfel?", cands, docs)
    assert net.windows == [TEXT[: TEXT.index(" Danach")], TEXT[: TEXT.index(" Putin")]]
    assert readings[1].span is not None and TEXT[slice(*readings[1].span)] == "zwei Stunden"
    assert readings[1].score == 3.0 and readings[1].no_answer == -3.0
    # Not read: no reader opinion, the heuristic phrase (if any) stays.
    assert readings[2].no_answer is None and readings[3].no_answer is None


def test_neighbouring_candidates_share_one_window_up_to_its_length_limit():
    docs = Docs({"a": TEXT})
    cands = _cands(docs, [0.9, 0.8, 0.1, 0.7])
    net = StubNetwork()
    ModelReader(Config(reader_top=3, reader_context=1), model=net)("Wie lange dauerte der Gipfel?", cands, docs)
    # Sentences 0, 1 and 3: their windows touch, so all three are read in the whole text.
    assert net.windows == [TEXT] * 3
    net = StubNetwork()
    ModelReader(Config(reader_top=3, reader_context=1, reader_window_chars=60), model=net)("Wie lange?", cands, docs)
    # Too long to share: each candidate in its own window (its sentence and its neighbours).
    first_two = TEXT[: TEXT.index(" Danach")]
    assert net.windows == [first_two, TEXT[: TEXT.index(" Putin")], TEXT[TEXT.index("Danach") :]]


def test_a_span_outside_the_candidate_sentence_is_not_taken():
    docs = Docs({"a": TEXT})

    class Outside(StubNetwork):
        def read(self, question, windows, focus=None):
            return [WindowReading((0, 3), 5.0) for _ in windows]  # always the window's first word

    cands = _cands(docs, [0.1, 0.9, 0.1, 0.1])
    readings = ModelReader(Config(reader_top=1), model=Outside())("Wie lange dauerte der Gipfel?", cands, docs)
    # The window starts one sentence before the candidate: its first word is not in the candidate.
    assert readings[1].score == 5.0 and (readings[1].span is None or readings[1].span[0] >= cands[1].start)


def test_combined_scorer_adds_the_weighted_margin_and_ranks_unread_sentences_at_the_lowest_margin():
    cfg = Config(reader_weight=0.1)
    cands = [Candidate("a", i * 10, i * 10 + 5, "x", prior=0.0) for i in range(3)]
    for c, d in zip(cands, (0.80, 0.90, 0.95)):
        c.dense = d
    cands[0].span_score, cands[0].no_answer = 4.0, -4.0
    cands[1].span_score, cands[1].no_answer = -1.0, 1.0
    scores = CombinedScorer(cfg)("q", cands)
    base = HeuristicScorer(cfg)("q", cands)
    assert scores == pytest.approx(base + 0.1 * np.array([4.0, -1.0, -1.0]))
    assert np.argmax(scores) == 0


def test_auto_scorer_follows_the_reader():
    assert isinstance(make_scorer(Config(reader="trained")), CombinedScorer)
    assert isinstance(make_scorer(Config(reader="heuristic")), HeuristicScorer)


def test_abstention_uses_the_readers_margin_when_it_gave_one():
    cfg = Config(reader_threshold=0.5, abstain_threshold=0.87)
    c = Candidate("a", 0, 5, "x", prior=1.0)
    c.dense = 0.99  # similar enough for the heuristic evidence …
    c.span_score, c.no_answer = 0.2, -0.2  # … but the reader is not sure enough
    ev = weigh([c], cfg)
    assert ev == Evidence(0.2, "reader") and abstains(ev, cfg)
    c.no_answer = None
    ev = weigh([c], cfg)
    assert ev.source == "similarity" and not abstains(ev, cfg)


def test_answer_marks_the_model_readers_span_and_abstains_on_its_margin(fake_seed_index, monkeypatch):
    import rag.answering.neural as neural

    net = StubNetwork()
    monkeypatch.setattr(neural, "load_window_reader", lambda spec, backend="onnx-int8": net)
    idx = fake_seed_index.with_config(fake_seed_index.config.replace(reader="trained", reader_threshold=0.0))
    ans = answer(idx, "Wie lange dauerte der Videogipfel zwischen Biden und Putin?", reader=ModelReader(idx.config, model=net))
    assert not ans.abstained and ans.phrase.endswith("Stunden")
    assert ans.passages[0].text[slice(*ans.passages[0].phrase)] == ans.phrase
    ans = answer(idx, "Wer gewann die Fußball-WM 2014?", reader=ModelReader(idx.config, model=net))
    assert ans.abstained and ans.confidence == -2.0
