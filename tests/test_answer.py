"""Answer building blocks: typed highlights, agreement, quotes, abstention, merging, diversification."""
from __future__ import annotations

import pytest

from fakes import FakeEmbedder
from rag import QuestionError
from rag.answer import _Cand, agreement_of, corroborating, find_phrase, phrase_value, question_type, quote_span
from rag.retrieval import Passage, diversify, merge_spans

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
        ("Wie lange dauerte der Gipfel?", "Der Videogipfel am Dienstag dauerte rund zwei Stunden, wie Agenturen meldeten.", "duration", "rund zwei Stunden"),
        ("Wie lange dauerte der Gipfel?", KREML, "duration", "gut zweistündigen"),
        ("Wie lange dauerte der Gipfel?", "Sie dauerten zwei Stunden und fünf Minuten und fanden im geschlossenen Format statt.", "duration", "zwei Stunden und fünf Minuten"),
        ("Um wie viel Uhr meldete der Kreml das Ende der Gespräche?", KREML, "time", "18.15 Uhr"),
        ("Wann will Biden mit Selenskyj sprechen?", "Am Donnerstag wolle Biden mit dem ukrainischen Präsidenten Selenskyj sprechen.", "time", "Am Donnerstag"),
        ("In welchem Jahr wurde die Brücke eröffnet?", "Die Brücke wurde im Jahr 1998 nach langer Bauzeit eröffnet.", "time", "1998"),
        ("Wie viele Kilometer von der Grenze entfernt hat Moskau Soldaten zusammengezogen?", "Moskau hat etwa 300 Kilometer von der Grenze zehntausende Soldaten zusammengezogen.", "number", "etwa 300 Kilometer"),
        ("Wie viele Menschen sind im Konflikt gestorben?", "Mehr als 13.000 Menschen starben bisher in dem Konflikt.", "number", "13.000 Menschen"),
        ("Wie viele Soldaten könnten an der Grenze stehen?", "Im Jänner könnten rund 175.000 russische Soldaten an der Grenze stehen.", "number", "rund 175.000 russische Soldaten"),
        ("Wie weit ist die Stadt entfernt?", "Die Stadt liegt 300 km entfernt.", "number", "300 km"),
        ("Wer ist der Nationale Sicherheitsberater von Biden?", SULLIVAN, "entity", "Jake Sullivan"),
        ("Welche Zeitung warf Biden eine zu weiche Gangart vor?", "Das Wall Street Journal warf Biden eine zu weiche Gangart gegenüber Moskau vor.", "entity", "Wall Street Journal"),
        ("Wo hielt sich Putin während der Videokonferenz auf?", "Bei den Gesprächen war Putin in seiner Residenz in Sotschi, Biden im Weißen Haus in Washington.", "place", "Sotschi"),
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


class _StubIndex:
    def __init__(self, texts):
        from rag.config import Config
        from rag.corpus import Document

        self.config = Config()
        self.documents = {d: Document(id=d, text=t, title=d, date=None, source=d) for d, t in texts.items()}


def _cand(doc_id, text, sentence, score, vec):
    import numpy as np

    start = text.index(sentence)
    phrase = find_phrase(sentence, "duration", "Wie lange dauerte der Gipfel?")
    return _Cand(doc_id, start, start + len(sentence), prior=1.0, phrase=phrase, score=score, vec=np.array(vec, float))


def test_corroboration_quotes_the_sentence_about_the_same_event():
    lead = "Der Videogipfel dauerte rund zwei Stunden."
    geneva, video = "Das Treffen in Genf dauerte fast zwei Stunden.", "Die Videokonferenz dauerte zwei Stunden und fünf Minuten."
    other = "Im Juli folgte ein eineinhalbstündiges Telefonat."
    idx = _StubIndex({"a": lead, "b": f"{video} {geneva}", "c": other})
    cands = [
        _cand("a", lead, lead, 1.04, [1, 0]),
        _cand("b", f"{video} {geneva}", geneva, 1.02, [0.6, 0.8]),  # same figure, other event: higher score
        _cand("b", f"{video} {geneva}", video, 1.00, [0.95, 0.31]),
        _cand("c", other, other, 0.99, [0.9, 0.44]),  # a different figure: not grouped
    ]
    group = corroborating(idx, "Wie lange dauerte der Gipfel?", cands, "duration")
    assert [(c.doc_id, p) for c, p in group] == [("a", "rund zwei Stunden"), ("b", "zwei Stunden und fünf Minuten")]
    # Beyond the corroboration margin an agreeing sentence is not taken.
    idx.config = idx.config.replace(corroboration_margin=0.01)
    assert len(corroborating(idx, "Wie lange dauerte der Gipfel?", cands, "duration")) == 1


def test_quote_is_verbatim_and_cut_at_sentence_boundaries(fake_seed_index):
    idx = fake_seed_index
    doc_id = next(iter(idx.documents))
    text = idx.documents[doc_id].text
    from rag.chunking import split_sentences

    sents = split_sentences(text)
    s, e = sents[3]
    qs, qe = quote_span(idx, doc_id, s, e, 600)
    assert qs <= s and qe >= e and qe - qs <= 600
    assert qs in {a for a, _ in sents} and qe in {b for _, b in sents}


def test_quote_widens_to_a_strong_runner_up_of_the_same_article(fake_seed_index):
    idx = fake_seed_index
    doc_id = next(iter(idx.documents))
    from rag.chunking import split_sentences

    sents = split_sentences(idx.documents[doc_id].text)
    (s, e), (a, b) = sents[2], sents[5]
    alone = quote_span(idx, doc_id, s, e, b - s)  # room for both, but growth alone goes backwards first
    both = quote_span(idx, doc_id, s, e, b - s, include=[(a, b)])
    assert both[0] <= s and both[1] >= b
    assert alone[1] < b
    # A runner-up too far away to fit is left out, and the quote still holds the answering sentence.
    far = quote_span(idx, doc_id, s, e, 200, include=[sents[-1]])
    assert far[0] <= s and far[1] >= e and far[1] < sents[-1][1]


def test_answer_offsets_and_highlight_are_consistent(fake_seed_index):
    from rag import Config, load_index

    idx = load_index(fake_seed_index.root, Config(abstain_threshold=-1.0), embedder=FakeEmbedder())
    ans = idx.answer("Wie lange dauerte der Videogipfel zwischen Biden und Putin?", k=3)
    assert ans.passages and not ans.abstained
    for p in ans.passages:
        assert fake_seed_index.documents[p.doc_id].text[p.start : p.end] == p.text
        a, b = p.highlight
        assert 0 <= a < b <= len(p.text)
        if p.phrase:
            assert a <= p.phrase[0] < p.phrase[1] <= b
        assert len(p.text) <= fake_seed_index.config.max_quote_chars


def test_answer_passages_come_from_different_articles_first(fake_seed_index):
    from rag import Config, load_index

    # The fake embedder's similarities are far below the real model's: switch abstention off.
    # Its scores also spread far wider, so the per-quote diversity step is scaled up to match.
    idx = load_index(fake_seed_index.root, Config(abstain_threshold=-1.0, answer_diversity=1.0), embedder=FakeEmbedder())
    ans = idx.answer("Biden Putin Gespräch Ukraine", k=3)
    assert len({p.doc_id for p in ans.passages}) == 3


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_raises_question_error(fake_seed_index, question):
    with pytest.raises(QuestionError):
        fake_seed_index.answer(question)
    with pytest.raises(QuestionError):
        fake_seed_index.retrieve(question)


def test_overlong_question_is_truncated_not_rejected(fake_seed_index, caplog):
    ans = fake_seed_index.answer("Gipfel " * 3000)
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
    ids = idx.manifest["documents"][doc_id]["chunk_ids"][:2]
    merged = merge_spans(idx, [(ids[0], 0.9), (ids[1], 0.8)])
    assert len(merged) == 1
    p = merged[0]
    assert p.start == idx.chunks[ids[0]].start and p.end == idx.chunks[ids[1]].end
    assert idx.documents[doc_id].text[p.start : p.end] == p.text


def test_date_and_document_filters(fake_seed_index):
    idx = fake_seed_index
    dated = [d for d, doc in idx.documents.items() if doc.date]
    only = idx.retrieve("Biden Putin", k=5, doc_ids=[dated[0]])
    assert {p.doc_id for p in only} == {dated[0]}
    in_range = idx.retrieve("Biden Putin", k=5, date_from="2021-12", date_to="2021-12")
    assert in_range and all(idx.documents[p.doc_id].date.startswith("2021-12") for p in in_range)
    assert idx.retrieve("Biden Putin", k=5, date_from="2030") == []


@pytest.mark.slow
def test_dev_questions_with_the_real_model(seed_index):
    """The 20 seed dev questions through the real model: abstain exactly on the unanswerable one,
    and quote the answer near the top for (almost) all others."""
    from rag.evaluation import contains_answer, load_jsonl_qa

    from conftest import SHARED

    items = load_jsonl_qa(SHARED / "eval" / "seed-qa.jsonl")
    top1 = top3 = 0
    answerable = [i for i in items if i.answers]
    for item in items:
        ans = seed_index.answer(item.question, k=3)
        assert ans.abstained == (not item.answers), item.question
        if item.answers:
            top1 += contains_answer(ans.passages[0].text, item.answers)
            top3 += any(contains_answer(p.text, item.answers) for p in ans.passages)
    assert top1 / len(answerable) >= 0.85
    assert top3 / len(answerable) >= 0.9


@pytest.mark.slow
def test_summit_duration_is_answered_with_agreeing_sources(seed_index):
    ans = seed_index.answer("Wie lange dauerte der Gipfel?", k=3)
    assert not ans.abstained
    assert "zwei Stunden" in ans.phrase or "zweistündig" in ans.phrase
    assert ans.agreement is not None and ans.agreement.agree and len(ans.agreement.phrases) >= 2
    # Each article that gives the duration of this summit is quoted once, with its own phrase; the
    # Geneva meeting of June (same figure, other event) is not among them.
    assert ans.agreement.phrases == [
        ("000_aa78fff76f6e486e", "rund zwei Stunden"),
        ("003_895ec12886e94bdb", "zwei Stunden und fünf Minuten"),
        ("001_10c1cd6136e05353", "gut zweistündigen"),
    ]
    assert [p.doc_id for p in ans.passages] == [d for d, _ in ans.agreement.phrases]
    assert all("Genf" not in p.text for p in ans.passages)
