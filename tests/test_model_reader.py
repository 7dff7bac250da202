"""The model reader's plumbing: which windows it reads, how its scores become probabilities over
all windows of a question, how the combiner ranks and abstains, and when sources may agree. A stub
network stands in for the trained one (answer quality is tested with the shipped weights in
test_reader.py and test_answering.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rag.answering import answer
from rag.answering.agreement import corroborating
from rag.answering.calibration import FEATURES, Combiner, candidate_features
from rag.answering.candidates import Candidate, lexical_features
from rag.answering.evidence import abstains, weigh
from rag.answering.neural import ModelReader, ReaderScorer, shared_norm
from rag.answering.scoring import HeuristicScorer, make_scorer
from rag.answering.windows import plan_reading, plan_windows
from rag.config import Config
from rag.reader.runtime import WindowReading

Q = "Wie lange dauerte der Gipfel?"


class StubNetwork:
    """Marks the word „Stunden“ (with the word before it) wherever the focus holds it: span score
    3; elsewhere no span (score −2). Every window has "no answer" logits (0, 0) and the same norm.
    Records the windows it was asked to read."""

    fingerprint = "stub"

    def __init__(self):
        self.windows: list[str] = []

    def read(self, question, windows, focus=None):
        self.windows += list(windows)
        out = []
        for w, (fs, fe) in zip(windows, focus):
            at = w.find("Stunden", fs, fe)
            if at < 0:
                out.append(WindowReading(None, -2.0, -2.0, (0.0, 0.0), (1.0, 1.0)))
                continue
            start = w.rfind(" ", fs, at - 1) + 1
            out.append(WindowReading((start, at + len("Stunden")), 3.0, 3.0, (0.0, 0.0), (1.0, 1.0)))
        return out


class Docs:
    def __init__(self, texts: dict[str, str]):
        from rag.text import split_sentences

        self.documents = {k: type("D", (), {"text": v})() for k, v in texts.items()}
        self._sents = {k: split_sentences(v) for k, v in texts.items()}

    def sentences(self, doc_id):
        return self._sents[doc_id]


TEXT = "Der Gipfel begann am Morgen. Er dauerte zwei Stunden. Danach sprach Biden. Putin flog heim. Dann regnete es."


def _cands(docs: Docs, priors: list[float]) -> list[Candidate]:
    return [Candidate("a", s, e, TEXT[s:e], prior=p) for (s, e), p in zip(docs.sentences("a"), priors)]


def _plan(docs, cands, cfg):
    lexical_features(Q, cands, cfg)
    return plan_reading(docs, cands, cfg)


def test_reading_plan_reads_the_best_candidates_with_their_neighbours_as_candidates_too():
    docs = Docs({"a": TEXT})
    cfg = Config(reader_top=1, reader_context=1, reader_window_chars=0)
    # Only sentences 0 and 4 were retrieved; sentence 4 („Dann regnete es.“) has the best prior.
    sents = docs.sentences("a")
    cands = [Candidate("a", *sents[0], TEXT[slice(*sents[0])], prior=0.1), Candidate("a", *sents[4], TEXT[slice(*sents[4])], prior=0.9)]
    planned = _plan(docs, cands, cfg)
    window = (sents[3][0], sents[4][1])
    read = [c for c in planned if c.window is not None]
    assert [c.text for c in read] == ["Putin flog heim.", "Dann regnete es."]  # the neighbour joined
    assert all(c.window == window for c in read)
    assert planned[-1] is cands[0] and cands[0].window is None  # not read: after the read ones


def test_the_typed_phrase_and_word_overlap_choose_what_is_read():
    docs = Docs({"a": TEXT})
    cands = _cands(docs, [0.5] * 5)
    planned = _plan(docs, cands, Config(reader_top=1, reader_context=0))
    # „zwei Stunden“ is a duration, what „wie lange“ asks for: its sentence is read, alone.
    assert [c.text for c in planned if c.window] == ["Er dauerte zwei Stunden."]


def test_neighbouring_candidates_share_one_window_up_to_its_length_limit():
    docs = Docs({"a": TEXT})
    cands = _cands(docs, [0.9, 0.8, 0.1, 0.7, 0.1])
    chosen = [cands[0], cands[1], cands[3]]
    # Sentences 0, 1 and 3: their windows touch, so all three share the text up to sentence 4.
    assert len(set(plan_windows(docs, chosen, 1, 10_000))) == 1
    # Too long to share: each in its own window (its sentence and its neighbours).
    spans = plan_windows(docs, chosen, 1, 60)
    assert len(set(spans)) == 3 and TEXT[slice(*spans[0])] == "Der Gipfel begann am Morgen. Er dauerte zwei Stunden."


def test_model_reader_reads_each_window_once_and_gives_its_sentences_spans_and_log_probabilities():
    docs = Docs({"a": TEXT})
    net = StubNetwork()
    cfg = Config(reader_top=2, reader_context=1, reader_window_chars=10_000)
    planned = _plan(docs, _cands(docs, [0.9, 0.8, 0.1, 0.1, 0.1]), cfg)
    readings = ModelReader(cfg, model=net)(Q, planned, docs)
    assert len(set(net.windows)) == 1  # one window, shared
    by_text = {c.text: r for c, r in zip(planned, readings)}
    hit = by_text["Er dauerte zwei Stunden."]
    assert TEXT[slice(*hit.span)] == "zwei Stunden" and hit.score == 3.0
    # One window: log P(span) = 3 − 2·norm(1); log P(no answer) = 0 − 2·1.
    assert hit.log_prob == pytest.approx(1.0) and hit.log_prob_null == pytest.approx(-2.0)
    unread = [r for c, r in zip(planned, readings) if c.window is None]
    assert all(r.no_answer is None and r.log_prob is None for r in unread)


def test_a_span_outside_the_candidate_sentence_is_not_taken():
    docs = Docs({"a": TEXT})

    class Outside(StubNetwork):
        def read(self, question, windows, focus=None):
            return [WindowReading((0, 3), 5.0, 5.0, (0.0, 0.0), (6.0, 6.0)) for _ in windows]  # the window's first word

    cfg = Config(reader_top=1, reader_context=1)
    planned = _plan(docs, _cands(docs, [0.1, 0.9, 0.1, 0.1, 0.1]), cfg)
    readings = ModelReader(cfg, model=Outside())(Q, planned, docs)
    second = next(r for c, r in zip(planned, readings) if c.text == "Er dauerte zwei Stunden.")
    # The window starts one sentence before: its first word is not in this sentence.
    assert second.score == 5.0 and (second.span is None or TEXT[slice(*second.span)] == "zwei Stunden")


def test_shared_norm_is_one_softmax_over_every_window_and_no_answer():
    a = WindowReading((0, 1), 0.0, 2.0, (0.5, -1.0), (math.log(5.0), math.log(3.0)))
    b = WindowReading((0, 1), 0.0, -1.0, (0.0, 0.0), (math.log(2.0), math.log(4.0)))
    (lp_a, lp_b), null = shared_norm([a, b], ["A", "B"])
    z = math.log(7.0) + math.log(7.0)  # the windows' start and end sums add up: 5 + 2 and 3 + 4
    assert lp_a == pytest.approx(2.0 - z) and lp_b == pytest.approx(-1.0 - z)
    assert null == pytest.approx(math.log(math.exp(0.5) + 1) + math.log(math.exp(-1.0) + 1) - z)
    # Readings of one window count its norm once; a reader without logits gives none.
    assert shared_norm([a, a], ["A", "A"])[1] == pytest.approx(0.5 - 1.0 - math.log(5.0) - math.log(3.0))
    assert shared_norm([WindowReading(None, 1.0)], ["A"]) is None


def _combiner(threshold: float = 0.5) -> Combiner:
    # P rises with the reader's log-probability only.
    coef = [1.0 if f == "log_prob" else 0.0 for f in FEATURES]
    return Combiner(FEATURES, (0.0,) * len(FEATURES), (1.0,) * len(FEATURES), tuple(coef), 0.0, threshold)


def _read(c: Candidate, log_prob: float) -> Candidate:
    c.log_prob, c.log_prob_null, c.no_answer, c.span_score = log_prob, -5.0, -1.0, 1.0
    return c


def test_reader_scorer_ranks_by_probability_and_every_unread_sentence_below_the_read_ones():
    cands = [Candidate("a", i * 10, i * 10 + 5, "x", prior=1.0) for i in range(3)]
    _read(cands[0], -3.0)
    _read(cands[1], 1.0)
    scorer = ReaderScorer(Config(reader="heuristic"), combiner=_combiner())
    scores = scorer(Q, cands)
    assert scores[:2] == pytest.approx([1 / (1 + math.exp(3.0)), 1 / (1 + math.exp(-1.0))])
    assert scores[2] < scores[0] and scorer.threshold == 0.5
    assert ReaderScorer(Config(reader="heuristic", reader_threshold=0.9), combiner=_combiner()).threshold == 0.9


def test_combiner_round_trips_and_rejects_features_it_does_not_know():
    c = _combiner(0.3)
    assert Combiner.from_dict(c.to_dict()) == c
    bad = c.to_dict() | {"features": ["log_prob", "moon_phase"]}
    with pytest.raises(ValueError):
        Combiner.from_dict(bad)
    x = candidate_features([_read(Candidate("a", 0, 5, "x", prior=0.5), -2.0)])
    assert x.shape == (1, len(FEATURES)) and x[0, FEATURES.index("gap")] == 0.0


def test_threshold_and_combiner_come_from_the_shipped_manifest(monkeypatch, tmp_path):
    import json

    import rag.answering.neural as neural

    (tmp_path / "manifest.json").write_text(json.dumps({"combiner": _combiner(0.42).to_dict()}))
    monkeypatch.setattr(neural, "WEIGHTS_DIR", tmp_path)
    neural.shipped_combiner.cache_clear()
    try:
        scorer = neural.ReaderScorer(Config(reader="trained"))
        assert scorer.threshold == 0.42 and scorer.combiner == _combiner(0.42)
    finally:
        neural.shipped_combiner.cache_clear()


def test_auto_scorer_follows_the_reader(monkeypatch):
    import rag.answering.neural as neural

    monkeypatch.setattr(neural, "shipped_combiner", lambda: _combiner())
    make_scorer.cache_clear()
    try:
        assert isinstance(make_scorer(Config(reader="trained")), ReaderScorer)
        assert isinstance(make_scorer(Config(reader="heuristic")), HeuristicScorer)
    finally:
        make_scorer.cache_clear()


def test_abstention_uses_the_calibrated_probability_when_the_scorer_has_a_threshold():
    cfg = Config(abstain_threshold=0.87)
    c = Candidate("a", 0, 5, "x", prior=1.0)
    c.dense, c.score, c.no_answer = 0.99, 0.3, -1.0  # similar enough for the rules, not for the reader
    ev = weigh([c], cfg, threshold=0.5)
    assert ev.source == "reader" and ev.strength == 0.3 and abstains(ev, cfg)
    ev = weigh([c], cfg)
    assert ev.source == "similarity" and not abstains(ev, cfg)


def _agreeing(score_b: float) -> list[Candidate]:
    texts = {"a": "Es dauerte zwei Stunden.", "b": "Das Gespräch dauerte zwei Stunden."}
    out = []
    for doc, score in (("a", 0.9), ("b", score_b)):
        t = texts[doc]
        c = Candidate(doc, 0, len(t), t, prior=1.0)
        c.span = (t.index("zwei"), len(t) - 1)
        c.score, c.no_answer = score, -1.0
        out.append(c)
    return out


def test_sources_agree_only_when_the_reader_accepts_every_agreeing_span():
    texts = {"a": "Es dauerte zwei Stunden.", "b": "Das Gespräch dauerte zwei Stunden."}
    cfg = Config()
    group = corroborating(_agreeing(0.8), "duration", texts.__getitem__, cfg, threshold=0.5)
    assert [c.doc_id for c, _ in group] == ["a", "b"]
    # The same words in article b, but the reader does not believe them there: no agreement.
    group = corroborating(_agreeing(0.2), "duration", texts.__getitem__, cfg, threshold=0.5)
    assert [c.doc_id for c, _ in group] == ["a"]


def test_answer_marks_the_model_readers_span_and_abstains_below_the_threshold(fake_seed_index):
    idx = fake_seed_index.with_config(fake_seed_index.config.replace(reader="trained", reader_threshold=None))
    net = StubNetwork()
    # The stub's span score (3) against its norm over ≈ 7 windows gives P ≈ 0.05; a sentence
    # without „Stunden“ (score −2) P < 0.001.
    reader, scorer = ModelReader(idx.config, model=net), ReaderScorer(idx.config, combiner=_combiner(0.01))
    ans = answer(idx, "Wie lange dauerte der Videogipfel zwischen Biden und Putin?", reader=reader, scorer=scorer)
    assert not ans.abstained and ans.phrase.endswith("Stunden") and 0.01 <= ans.confidence <= 1.0
    assert ans.passages[0].text[slice(*ans.passages[0].phrase)] == ans.phrase
    ans = answer(idx, "Wer gewann die Fußball-WM 2014?", reader=reader, scorer=scorer)
    assert ans.abstained and ans.confidence < 0.01 and ans.passages == [] and ans.withheld
    assert np.isfinite(ans.confidence)
