"""The answer stage (rag.answering): typed phrases, agreement, quotes, the scorer and reader seams,
abstention evidence, and answers end to end; retrieval's merging, diversification and filters."""
from __future__ import annotations

import numpy as np
import pytest

from fakes import FakeEmbedder
from rag import Config, QuestionError, RagError, load_index
from rag.answering import (
    READERS,
    Candidate,
    HeuristicReader,
    HeuristicScorer,
    Reading,
    abstains,
    agreement_of,
    answer,
    corroborating,
    evidence,
    find_phrase,
    make_reader,
    phrase_value,
    question_type,
    quote_span,
    same_answer,
)
from rag.retrieval import Filters, Passage, diversify, merge_spans, retrieve
from rag.text import split_sentences

# The fake embedder's similarities are far below the real model's: abstention off where an answer is expected.
NO_ABSTAIN = Config(reader="heuristic", abstain_threshold=-1.0)  # the rules alone: plumbing with the fake embedder

SULLIVAN = (
    "Der US-Präsident drohte Putin bei dem gut zweistündigen Gespräch im Falle einer russischen Invasion der Ukraine "
    "erneut mit «starken Wirtschaftsmaßnahmen» der USA, wie Bidens Nationaler Sicherheitsberater Jake Sullivan im "
    "Anschluss sagte."
)
KREML = (
    "Auch in Sachen Geschwindigkeit lag Moskau am Dienstag zeitweise vor Washington: Der Kreml meldete das Ende der "
    "gut zweistündigen Gespräche um 18.15 Uhr mitteleuropäischer Zeit, das Weiße Haus verschickte die Mitteilung elf "
    "Minuten später."
)


@pytest.mark.parametrize(
    "question, sentence, kind, expected",
    [
        (
            "Wie lange dauerte der Gipfel?",
            "Der Videogipfel am Dienstag dauerte rund zwei Stunden, wie Agenturen meldeten.",
            "duration",
            "rund zwei Stunden",
        ),
        ("Wie lange dauerte der Gipfel?", KREML, "duration", "gut zweistündigen"),
        (
            "Wie lange dauerte der Gipfel?",
            "Sie dauerten zwei Stunden und fünf Minuten und fanden im geschlossenen Format statt.",
            "duration",
            "zwei Stunden und fünf Minuten",
        ),
        ("Um wie viel Uhr meldete der Kreml das Ende der Gespräche?", KREML, "time", "18.15 Uhr"),
        (
            "Wann will Biden mit Selenskyj sprechen?",
            "Am Donnerstag wolle Biden mit dem ukrainischen Präsidenten Selenskyj sprechen.",
            "time",
            "Am Donnerstag",
        ),
        ("In welchem Jahr wurde die Brücke eröffnet?", "Die Brücke wurde im Jahr 1998 nach langer Bauzeit eröffnet.", "time", "1998"),
        (
            "Wie viele Kilometer von der Grenze entfernt hat Moskau Soldaten zusammengezogen?",
            "Moskau hat etwa 300 Kilometer von der Grenze zehntausende Soldaten zusammengezogen.",
            "number",
            "etwa 300 Kilometer",
        ),
        (
            "Wie viele Menschen sind im Konflikt gestorben?",
            "Mehr als 13.000 Menschen starben bisher in dem Konflikt.",
            "number",
            "13.000 Menschen",
        ),
        (
            "Wie viele Soldaten könnten an der Grenze stehen?",
            "Im Jänner könnten rund 175.000 russische Soldaten an der Grenze stehen.",
            "number",
            "rund 175.000 russische Soldaten",
        ),
        ("Wie weit ist die Stadt entfernt?", "Die Stadt liegt 300 km entfernt.", "number", "300 km"),
        ("Wer ist der Nationale Sicherheitsberater von Biden?", SULLIVAN, "entity", "Jake Sullivan"),
        (
            "Welche Zeitung warf Biden eine zu weiche Gangart vor?",
            "Das Wall Street Journal warf Biden eine zu weiche Gangart gegenüber Moskau vor.",
            "entity",
            "Wall Street Journal",
        ),
        (
            "Wo hielt sich Putin während der Videokonferenz auf?",
            "Bei den Gesprächen war Putin in seiner Residenz in Sotschi, Biden im Weißen Haus in Washington.",
            "place",
            "Sotschi",
        ),
    ],
)
def test_typed_highlight_finds_the_answering_phrase(question, sentence, kind, expected):
    assert question_type(question) == kind
    span = find_phrase(sentence, kind, question)
    assert span is not None
    phrase = sentence[span[0] : span[1]]
    assert expected in phrase
    assert len(phrase) < len(sentence) / 2  # narrowed, not the whole sentence


def test_question_without_typed_answer_gets_no_phrase():
    assert question_type("Was schlug Putin vor, um den Dialog fortzusetzen?") is None
    assert find_phrase("Putin schlug vor, Beschränkungen aufzuheben.", None, "Was schlug Putin vor?") is None


def test_phrase_repeating_the_question_is_not_an_answer():
    q = "Was geschah am Dienstag um 18.15 Uhr?"
    assert find_phrase("Am Dienstag um 18.15 Uhr endete das Gespräch.", "time", q) is None


def test_durations_that_agree_are_grouped_as_agreeing():
    assert phrase_value("rund zwei Stunden") == 120
    assert phrase_value("gut zweistündigen") == 120
    assert phrase_value("zwei Stunden und fünf Minuten") == 125
    ag = agreement_of([("a", "rund zwei Stunden"), ("b", "gut zweistündigen"), ("c", "zwei Stunden und fünf Minuten")])
    assert ag.agree
    assert ag.line.startswith("3 Quellen stimmen überein: rund zwei Stunden · gut zweistündigen")


def test_numbers_that_differ_are_reported_as_differing():
    ag = agreement_of([("a", "mehr als 120.000 Soldaten"), ("b", "175.000 Soldaten")])
    assert not ag.agree and "weichen voneinander ab" in ag.line
    assert agreement_of([("a", "120.000")]) is None


def test_only_answers_in_comparable_terms_contradict():
    # Different counted things, different kinds of date, different names: no contradiction claimed.
    assert agreement_of([("a", "etwa 300 Kilometer"), ("b", "rund 175.000 Soldaten")], "number") is None
    assert agreement_of([("a", "2018"), ("b", "am Dienstag")], "time") is None
    assert agreement_of([("a", "Jake Sullivan"), ("b", "Antony Blinken")], "entity") is None
    # The same day, said with or without its preposition, agrees; another weekday differs.
    assert agreement_of([("a", "Am Donnerstag"), ("b", "Donnerstag")], "time").agree
    assert not agreement_of([("a", "Am Donnerstag"), ("b", "am Dienstag")], "time").agree


def test_agreement_line_names_the_agreeing_and_the_differing_sources():
    ag = agreement_of([("a", "rund zwei Stunden"), ("b", "gut zweistündigen"), ("c", "eineinhalb Stunden")], "duration")
    assert [d for d, _ in ag.phrases] == ["a", "b"] and ag.differing == [("c", "eineinhalb Stunden")]
    assert ag.line == "2 Quellen stimmen überein: rund zwei Stunden · gut zweistündigen; 1 weicht ab: eineinhalb Stunden"
    assert ag.to_dict()["agree"] is False


def test_magnitudes_are_part_of_the_value():
    assert phrase_value("3 Millionen Euro") == 3_000_000 and phrase_value("2,5 Mrd. Euro") == 2_500_000_000
    assert not same_answer("3 Millionen", "3 Milliarden")
    assert same_answer("3 Millionen Euro", "3.000.000 Euro")
    # Different magnitudes of one kind contradict each other; a share and a count are not comparable.
    assert not agreement_of([("a", "3 Millionen"), ("b", "3 Milliarden")]).agree
    assert not same_answer("5 Prozent", "5 Millionen")
    assert agreement_of([("a", "5 Prozent"), ("b", "5 Millionen")]) is None
    assert same_answer("5 Prozent", "5 %")


def test_how_long_asks_for_a_duration_how_long_is_for_a_length():
    assert question_type("Wie lang ist die Brücke?") == "number"
    assert question_type("Wie lange dauerte der Gipfel?") == "duration"
    assert question_type("Wie lange ist das her?") == "duration"


def _features(text: str, *, dense: float, lexical: float, prior: float, phrase=None) -> Candidate:
    return Candidate("a", 0, len(text), text, prior=prior, dense=dense, lexical=lexical, phrase=phrase)


def test_heuristic_scorer_adds_weighted_overlap_typed_phrase_and_prior():
    cfg = Config()
    cands = [
        _features("Der Gipfel dauerte zwei Stunden.", dense=0.8, lexical=0.5, prior=1.0, phrase=(19, 31)),
        _features("Biden sprach mit Putin.", dense=0.9, lexical=0.0, prior=0.5),
    ]
    scores = HeuristicScorer(cfg)("Wie lange dauerte der Gipfel?", cands)
    expected = [0.8 + cfg.lexical_weight * 0.5 + cfg.typed_weight + cfg.prior_weight, 0.9 + cfg.prior_weight * 0.5]
    assert scores.tolist() == pytest.approx(expected)


def test_heuristic_reader_marks_the_typed_phrase_in_document_offsets():
    text = "Biden und Putin sprachen per Video. Der Gipfel dauerte rund zwei Stunden, meldeten Agenturen."
    s = text.index("Der Gipfel")
    cands = [Candidate("a", 0, s - 1, text[: s - 1], prior=1.0), Candidate("a", s, len(text), text[s:], prior=1.0)]
    readings = HeuristicReader(Config())("Wie lange dauerte der Gipfel?", cands, {"a": text}.__getitem__)
    assert readings[0] == Reading(0.0, None)
    assert text[slice(*readings[1].span)] == "rund zwei Stunden" and readings[1].no_answer is None
    # A question without a typed answer gets no span.
    assert HeuristicReader(Config())("Was sagte Biden?", cands, {"a": text}.__getitem__) == [Reading(0.0, None)] * 2


def test_evidence_is_the_best_dense_plus_weighted_overlap_whatever_the_score():
    cfg = Config()
    cands = [_features("x", dense=0.80, lexical=0.2, prior=1.0), _features("y", dense=0.86, lexical=0.0, prior=0.0)]
    cands[1].score = 99.0  # the ranking does not enter the evidence
    assert evidence(cands, cfg) == pytest.approx(0.80 + cfg.evidence_lexical_weight * 0.2)
    assert evidence([], cfg) == 0.0
    assert abstains(cfg.abstain_threshold - 0.01, cfg) and not abstains(cfg.abstain_threshold, cfg)


class FirstWordReader:
    """A reader that marks each sentence's first word, sure of it."""

    def __call__(self, question, candidates, docs):
        out = []
        for c in candidates:
            word = c.text.split()[0]
            out.append(Reading(0.9, (c.start, c.start + len(word)), no_answer=0.1))
        return out


class ShortestSentenceScorer:
    """A scorer that prefers short sentences: nothing like the heuristic's ranking."""

    def __call__(self, question, candidates):
        return np.array([-len(c.text) for c in candidates], dtype=float)


def test_a_reader_and_a_scorer_plug_into_the_answer(fake_seed_index):
    idx = load_index(fake_seed_index.root, NO_ABSTAIN, embedder=FakeEmbedder())
    q = "Wie lange dauerte der Videogipfel zwischen Biden und Putin?"
    default = answer(idx, q, k=3)
    ans = answer(idx, q, k=3, scorer=ShortestSentenceScorer(), reader=FirstWordReader())
    best = ans.passages[0]
    assert ans.phrase == best.highlighted.split()[0]  # the reader's span is the marked phrase
    assert best.phrase[0] == best.highlight[0]
    lengths = [len(p.highlighted) for p in ans.passages]
    assert lengths[0] == min(lengths)  # the scorer's ranking chose the first quote
    # Without a calibrated scorer (a `threshold`), the abstention evidence is the similarity: neither
    # the ranking nor the reader moves it.
    assert answer(idx, q, k=3, scorer=ShortestSentenceScorer()).confidence == default.confidence
    assert ans.confidence == default.confidence


def test_scorer_and_reader_are_chosen_by_name(monkeypatch):
    assert Config().reader == "trained" and READERS["trained"] == "rag.answering.neural:ModelReader"
    assert isinstance(make_reader(Config(reader="heuristic")), HeuristicReader)
    with pytest.raises(RagError, match="Unbekannter Leser: erfunden"):
        make_reader(Config(reader="erfunden"))
    monkeypatch.setitem(READERS, "erster", lambda config: FirstWordReader())
    assert isinstance(make_reader(Config(reader="erster")), FirstWordReader)
    monkeypatch.setitem(READERS, "aus-modul", "tests_reader_module:Reader")  # "module:attribute", imported on first use
    with pytest.raises(ModuleNotFoundError):
        make_reader(Config(reader="aus-modul"))


def _candidate(texts: dict[str, str], doc_id: str, sentence: str, score: float, vec) -> Candidate:
    """A scored candidate sentence of `texts[doc_id]`, its span what the heuristic reader marks."""
    text = texts[doc_id]
    start = text.index(sentence)
    c = Candidate(doc_id, start, start + len(sentence), sentence, prior=1.0, score=score, vec=np.array(vec, float))
    c.span = HeuristicReader(Config())("Wie lange dauerte der Gipfel?", [c], texts.__getitem__)[0].span
    return c


def test_corroboration_quotes_the_sentence_about_the_same_event():
    lead = "Der Videogipfel dauerte rund zwei Stunden."
    geneva, video = "Das Treffen in Genf dauerte fast zwei Stunden.", "Die Videokonferenz dauerte zwei Stunden und fünf Minuten."
    other = "Im Juli folgte ein eineinhalbstündiges Telefonat."
    texts = {"a": lead, "b": f"{video} {geneva}", "c": other}
    ranked = [
        _candidate(texts, "a", lead, 1.04, [1, 0]),
        _candidate(texts, "b", geneva, 1.02, [0.6, 0.8]),  # same figure, other event: higher score
        _candidate(texts, "b", video, 1.00, [0.95, 0.31]),
        _candidate(texts, "c", other, 0.99, [0.9, 0.44]),  # a different figure: not grouped
    ]
    group = corroborating(ranked, "duration", texts.__getitem__, Config())
    assert [(c.doc_id, p) for c, p in group] == [("a", "rund zwei Stunden"), ("b", "zwei Stunden und fünf Minuten")]
    # Beyond the corroboration margin an agreeing sentence is not taken.
    assert len(corroborating(ranked, "duration", texts.__getitem__, Config(corroboration_margin=0.01))) == 1


def test_corroboration_compares_the_spans_the_reader_marked():
    texts = {"a": "Der Gipfel dauerte zwei Stunden.", "b": "Das Gespräch dauerte zwei Stunden."}
    ranked = [_candidate(texts, d, t, 1.0, [1, 0]) for d, t in texts.items()]
    ranked[1].span = (ranked[1].start, ranked[1].start + len("Das Gespräch"))  # a reader's other choice
    assert [c.doc_id for c, _ in corroborating(ranked, "duration", texts.__getitem__, Config())] == ["a"]


def test_quote_is_verbatim_and_cut_at_sentence_boundaries(fake_seed_index):
    idx = fake_seed_index
    doc_id = next(iter(idx.documents))
    sents = split_sentences(idx.documents[doc_id].text)
    assert idx.sentences(doc_id) == sents
    s, e = sents[3]
    qs, qe = quote_span(sents, s, e, 600)
    assert qs <= s and qe >= e and qe - qs <= 600
    assert qs in {a for a, _ in sents} and qe in {b for _, b in sents}


def test_quote_widens_to_a_strong_runner_up_of_the_same_article(fake_seed_index):
    idx = fake_seed_index
    doc_id = next(iter(idx.documents))
    sents = split_sentences(idx.documents[doc_id].text)
    (s, e), (a, b) = sents[2], sents[5]
    alone = quote_span(sents, s, e, b - s)  # room for both, but growth alone goes backwards first
    both = quote_span(sents, s, e, b - s, include=[(a, b)])
    assert both[0] <= s and both[1] >= b
    assert alone[1] < b
    # A runner-up too far away to fit is left out, and the quote still holds the answering sentence.
    far = quote_span(sents, s, e, 200, include=[sents[-1]])
    assert far[0] <= s and far[1] >= e and far[1] < sents[-1][1]


@pytest.mark.parametrize("reader", ["heuristic", "trained"])
def test_answer_offsets_and_highlight_are_consistent(fake_seed_index, reader):
    idx = load_index(fake_seed_index.root, NO_ABSTAIN.replace(reader=reader, reader_threshold=-100.0), embedder=FakeEmbedder())
    ans = answer(idx, "Wie lange dauerte der Videogipfel zwischen Biden und Putin?", k=3)
    assert ans.passages and not ans.abstained
    for p in ans.passages:
        assert fake_seed_index.documents[p.doc_id].text[p.start : p.end] == p.text
        a, b = p.highlight
        assert 0 <= a < b <= len(p.text)
        if p.phrase:
            assert a <= p.phrase[0] < p.phrase[1] <= b
        assert len(p.text) <= fake_seed_index.config.max_quote_chars


def test_a_large_quote_diversity_penalty_quotes_different_articles(fake_seed_index):
    # The fake embedder's scores spread far wider than the real model's, so the per-quote
    # diversity penalty is set large enough to always prefer a sentence of another article.
    idx = load_index(fake_seed_index.root, NO_ABSTAIN.replace(answer_diversity=1.0), embedder=FakeEmbedder())
    ans = answer(idx, "Biden Putin Gespräch Ukraine", k=3)
    assert len({p.doc_id for p in ans.passages}) == 3


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_raises_question_error(fake_seed_index, question):
    with pytest.raises(QuestionError):
        answer(fake_seed_index, question)
    with pytest.raises(QuestionError):
        retrieve(fake_seed_index, question)


def test_unknown_search_mode_is_a_question_error(fake_seed_index):
    for ask in (answer, retrieve):
        with pytest.raises(QuestionError, match="Unbekanntes Suchverfahren: sql"):
            ask(fake_seed_index, "Wie lange dauerte der Gipfel?", 3, "sql")


def test_overlong_question_is_truncated_not_rejected(fake_seed_index, caplog):
    ans = answer(fake_seed_index, "Gipfel " * 3000)
    assert len(ans.question) == fake_seed_index.config.max_question_chars
    assert "gekürzt" in caplog.text


def _passage(doc, start, end, score):
    return Passage(text="x" * (end - start), doc_id=doc, title="", date=None, source="", start=start, end=end, score=score)


def test_diversify_lets_other_articles_through():
    ps = [_passage("a", 0, 10, 1.0), _passage("a", 20, 30, 0.95), _passage("a", 40, 50, 0.9), _passage("b", 0, 10, 0.6)]
    assert [p.doc_id for p in diversify(ps, 2)] == ["a", "b"]


def test_subtractive_diversity_keeps_a_much_better_second_quote_of_one_article():
    ps = [_passage("a", 0, 10, 1.0), _passage("a", 20, 30, 0.99), _passage("b", 0, 10, 0.90)]
    assert [p.doc_id for p in diversify(ps, 2, penalty=1.0, subtract=0.05)] == ["a", "a"]
    assert [p.doc_id for p in diversify(ps, 2, penalty=1.0, subtract=0.2)] == ["a", "b"]


def test_overlapping_chunks_of_one_article_are_merged(fake_seed_index):
    idx = fake_seed_index
    doc_id = next(iter(idx.documents))
    ids = idx.chunks_of(doc_id)[:2]
    merged = merge_spans(idx, [(ids[0], 0.9), (ids[1], 0.8)])
    assert len(merged) == 1
    p = merged[0]
    assert p.start == idx.chunks[ids[0]].start and p.end == idx.chunks[ids[1]].end
    assert idx.documents[doc_id].text[p.start : p.end] == p.text


def test_date_and_document_filters(fake_seed_index):
    idx = fake_seed_index
    dated = [d for d, doc in idx.documents.items() if doc.date]
    only = retrieve(idx, "Biden Putin", 5, filters=Filters(doc_ids=[dated[0]]))
    assert {p.doc_id for p in only} == {dated[0]}
    in_range = retrieve(idx, "Biden Putin", 5, filters=Filters(date_from="2021-12", date_to="2021-12"))
    assert in_range and all(idx.documents[p.doc_id].date.startswith("2021-12") for p in in_range)
    assert retrieve(idx, "Biden Putin", 5, filters=Filters(date_from="2030")) == []
    quoted = answer(load_index(idx.root, NO_ABSTAIN, embedder=FakeEmbedder()), "Biden Putin", 3, filters=Filters(doc_ids=[dated[0]]))
    assert {p.doc_id for p in quoted.passages} == {dated[0]}


def test_filters_give_the_allowed_documents():
    from rag.corpus import Document

    docs = {d: Document(id=d, text="x", title=d, date=date, source=d) for d, date in [("a", "2021-12-07"), ("b", "2022-01"), ("c", None)]}
    assert Filters().allowed(docs) is None  # nothing filtered
    assert Filters(doc_ids=["a", "c", "unbekannt"]).allowed(docs) == {"a", "c"}
    assert Filters(date_from="2021-12", date_to="2021-12").allowed(docs) == {"a"}
    assert Filters(date_from="2022").allowed(docs) == {"b"}  # undated articles never pass a date filter
    assert Filters(doc_ids=["a"], date_from="2022").allowed(docs) == set()


@pytest.mark.slow
def test_dev_questions_with_the_real_model(seed_index):
    """The 20 seed dev questions through the real model: every answerable one answered, its answer in
    the first quote for (almost) all, and the unanswerable one the least sure of all. (Abstaining on
    it is a goal the shipped threshold, chosen on the news dev split, misses on these five articles:
    README, Quality.)"""
    from conftest import EVAL
    from rag.evaluation import contains_answer, load_jsonl_qa

    items = load_jsonl_qa(EVAL / "seed-qa.jsonl")
    top1 = top3 = 0
    answerable = [i for i in items if i.answers]
    sure: dict[bool, list[float]] = {True: [], False: []}
    for item in items:
        ans = answer(seed_index, item.question, k=3)
        sure[bool(item.answers)].append(ans.confidence)
        if item.answers:
            assert not ans.abstained, item.question
            top1 += contains_answer(ans.passages[0].text, item.answers)
            top3 += any(contains_answer(p.text, item.answers) for p in ans.passages)
    assert top1 / len(answerable) >= 0.94
    assert top3 / len(answerable) >= 0.94
    assert max(sure[False]) < min(sure[True])


@pytest.mark.slow
def test_summit_duration_is_answered_with_agreeing_sources(seed_index):
    ans = answer(seed_index, "Wie lange dauerte der Gipfel?", k=3)
    assert not ans.abstained
    assert ans.phrase == "rund zwei Stunden"
    # Each article that gives the duration of this summit is quoted once, with its own whole phrase
    # (the reader's span completed to the whole value); the Geneva meeting of June (same figure,
    # other event) is not among them.
    assert ans.agreement is not None and ans.agreement.agree
    # Only spans the reader accepts agree (Sullivan's „gut zweistündigen“ joins when it does); of
    # article 003 its report of this call, not of the Geneva meeting („fast zwei Stunden“).
    assert ans.agreement.phrases[:2] == [
        ("000_aa78fff76f6e486e", "rund zwei Stunden"),
        ("003_895ec12886e94bdb", "zwei Stunden und fünf Minuten"),
    ]
    assert ans.agreement.phrases[2:] in ([], [("001_10c1cd6136e05353", "gut zweistündigen")])
    agreeing = [d for d, _ in ans.agreement.phrases]
    assert [p.doc_id for p in ans.passages][: len(agreeing)] == agreeing  # the agreeing sources are quoted first
    assert all("Genf" not in p.text for p in ans.passages[: len(agreeing)])  # no agreeing quote is about Geneva


def test_a_paraphrased_duration_question_gets_the_summits_length(seed_index):
    # Round 1 answered „zehn Monaten“ (from „seit seinem Amtsantritt vor zehn Monaten“).
    ans = answer(seed_index, "Wie lang war das Videotelefonat zwischen Putin und Biden?", k=3)
    # Two articles give the call's length, each in its own words; either is right.
    assert ans.phrase in {"rund zwei Stunden", "zwei Stunden und fünf Minuten"}
    assert ans.agreement is not None and ans.agreement.agree


@pytest.mark.parametrize("sentence, source", [
    ("Der Gipfel dauerte zwei Stunden, wie russische Nachrichtenagenturen am Dienstagabend meldeten.", "russische Nachrichtenagenturen"),
    ("Biden werde danach mit Merkel telefonieren, teilte das Weiße Haus mit.", "das Weiße Haus"),
    ("Nächstes Mal wolle er Putin wieder persönlich treffen, sagte der US-Präsident.", "der US-Präsident"),
    ("Laut Polizei wurden drei Personen verletzt.", "Polizei"),
    ("Die Zahl stieg nach Angaben des Innenministeriums auf 300.", "des Innenministeriums"),
    ("Er ist so groß wie sein Vater.", None),
    ("Biden sagte, er wolle reden.", None),
])
def test_the_source_of_a_statement_is_read_from_its_reporting_clause(sentence, source):
    from rag.answering.phrases import source_phrase

    span = source_phrase(sentence)
    assert (sentence[slice(*span)] if span else None) == source


@pytest.mark.parametrize("question, asks", [
    ("Und wer hat das gemeldet?", True), ("Wer sagte das?", True), ("Laut wem stieg die Zahl?", True),
    ("Wer teilte das mit?", True), ("Wer hat das betont?", True), ("Wer hat gewonnen?", False), ("Wer sagte das Spiel ab?", False),
    ("Wer hat seinen Rücktritt erklärt?", False), ("Wer erklärte als Sprecher, bis wann die Halle offen bleibt?", True),
])
def test_a_question_for_the_source_of_a_statement_is_recognised(question, asks):
    from rag.answering.phrases import asks_for_source

    assert asks_for_source(question) is asks
