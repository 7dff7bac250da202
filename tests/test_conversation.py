"""Follow-up questions: the history API, the chat topic, `rag chat` and conversation files in `rag eval`."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from rag import QuestionError
from rag.answering import ABSTAIN_MESSAGE, answer
from rag.conversation import clean_history, topic_after

SUMMIT_DOC = "001_10c1cd6136e05353"  # Sullivan's account of the summit


# ---------------------------------------------------------------- plumbing (no model)


@pytest.mark.parametrize("history", ["eine Frage", [1, 2], [None], {"q": "x"}])
def test_history_that_is_not_a_list_of_questions_is_a_question_error(history):
    with pytest.raises(QuestionError, match="Verlauf"):
        clean_history(history, 20, 1000)


def test_history_keeps_the_last_turns_cleaned_and_skips_blanks():
    assert clean_history(None, 20, 1000) == ()
    assert clean_history(["  Wer  kam?\n", " ", "Und wann?"], 20, 1000) == ("Wer kam?", "Und wann?")
    assert clean_history(["a?", "b?", "c?"], 2, 1000) == ("b?", "c?")
    assert clean_history(["a?"], 0, 1000) == ()


def test_topic_is_the_quoted_articles_with_earlier_ones_fading():
    first = topic_after(["a", "a", "b", "c"], {}, decay=0.5, articles=2)
    assert first == {"a": 1.0, "b": 0.5}
    # A turn that quoted other articles: those lead, the earlier ones stay at half weight.
    assert topic_after(["c"], first, decay=0.5, articles=2) == {"a": 0.5, "b": 0.25, "c": 1.0}
    # An abstention keeps the chat on its topic (fading) rather than forgetting it.
    assert topic_after([], first, decay=0.5, articles=2) == {"a": 0.5, "b": 0.25}


def _cand(doc, topic, margin):
    from rag.answering.candidates import Candidate

    return Candidate(doc, 0, 1, "x", prior=1.0, topic=topic, no_answer=None if margin is None else -margin)


def test_a_weak_answer_from_outside_the_chat_is_abstained_on_when_enabled():
    from rag import Config
    from rag.answering.evidence import strays_from_topic

    on = Config(context_threshold=2.0, stray_margin=4.0)
    stray = [_cand("other", 0.0, 3.0), _cand("chat", 1.0, 1.0)]
    assert strays_from_topic(stray, on)
    assert not strays_from_topic(stray, Config(context_threshold=None))  # off by default
    assert not strays_from_topic([_cand("other", 0.0, 5.0), _cand("chat", 1.0, 1.0)], on)  # a confident other article stands
    assert not strays_from_topic([_cand("other", 0.0, 3.0), _cand("chat", 1.0, 2.5)], on)  # the chat's article answers
    assert not strays_from_topic([_cand("chat", 1.0, -9.0)], on)  # the best answer is the chat's own
    assert not strays_from_topic([_cand("other", 0.0, None)], on)  # no reader opinion: nothing to judge


def test_a_chat_keeps_its_subject_and_topic_through_an_abstention():
    from rag.conversation import ChatState

    start = ChatState({"a": 1.0}, anchor="Wie lange dauerte der Gipfel?", answered=(("a", 10, 20),))
    assert start.after([], decay=0.5, articles=2, anchor="Wer gewann die WM?", answered=()) == start
    moved = start.after(["b"], decay=0.5, articles=2, anchor=start.anchor, answered=(("a", 10, 20), ("b", 0, 5)))
    assert moved == ChatState({"a": 0.5, "b": 1.0}, anchor="Wie lange dauerte der Gipfel?", answered=(("a", 10, 20), ("b", 0, 5)))


def test_a_follow_up_names_the_question_that_set_the_subject_not_the_previous_follow_up(fake_seed_index):
    from rag.answering.pipeline import chat_state

    idx = fake_seed_index.with_config(fake_seed_index.config.replace(abstain_threshold=-1.0))  # every turn answered
    first, follow = "Wie lange dauerte der Videogipfel?", "Und wer hat das gemeldet?"
    second = answer(idx, follow, 3, "bm25", history=[first])
    third = answer(idx, "Und wann war das?", 3, "bm25", history=[first, follow])
    state = chat_state(idx, (first, follow), 3, "bm25", None)
    assert not second.abstained and not third.abstained
    if second.context is not None:  # the follow-up was read in the chat's light: the subject stays the first question
        assert second.context == first and state.anchor == first
        assert third.context in (None, first)
    else:  # read on its own (it named its own topic): it set the subject itself
        assert state.anchor == follow


def test_an_empty_history_changes_nothing(fake_seed_index):
    q = "Wie lange dauerte der Videogipfel?"
    alone = answer(fake_seed_index, q, 3, "bm25")
    assert alone.context is None and alone.to_dict()["context"] is None
    for history in ((), [], None, ["  "]):
        assert answer(fake_seed_index, q, 3, "bm25", history=history).to_dict() == alone.to_dict()


def test_a_chat_reuses_the_previous_answer_instead_of_answering_it_again(fake_seed_index, monkeypatch):
    from rag.answering import pipeline

    idx = fake_seed_index.with_config(fake_seed_index.config.replace(history_turns=20))
    idx.clear_caches(["derived"])
    first = "Mit welchen Maßnahmen drohte Biden?"
    answer(idx, first, 3, "bm25")
    calls = []
    real_rank = pipeline.rank
    monkeypatch.setattr(pipeline, "rank", lambda *a, **kw: calls.append(a[1]) or real_rank(*a, **kw))
    answer(idx, "Und wer hat das gesagt?", 3, "bm25", history=[first])
    assert calls == ["Und wer hat das gesagt?"]  # the first turn was not ranked again
    # Without the memo (a history this index has not seen answered) the earlier turn is answered first, in order.
    calls.clear()
    answer(idx, "Und wann?", 3, "bm25", history=["Wo war Putin?", "Wer war dabei?"])
    assert calls == ["Wo war Putin?", "Wer war dabei?", "Und wann?"]


def test_service_and_module_api_take_the_history(fake_seed_index):
    from rag.service import RagService

    svc = RagService.of(fake_seed_index)
    ans = svc.answer("Und wer hat das gesagt?", k=2, mode="bm25", history=["Womit drohte Biden Putin?"])
    assert ans.context in (None, "Womit drohte Biden Putin?")
    with pytest.raises(QuestionError):
        svc.answer("Und wer?", history="Womit drohte Biden Putin?")
    with pytest.raises(QuestionError, match="leer"):
        svc.answer("   ", history=["Womit drohte Biden Putin?"])


# ---------------------------------------------------------------- conversation files


def _chats(tmp_path, rows) -> str:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_conversation_files_become_turns_with_their_history(tmp_path):
    from rag.evaluation import is_conversation_file, load_conversations

    path = _chats(tmp_path, [
        {"id": "c1", "turns": [{"question": "Wer kam?", "answers": ["Biden"], "doc": "d1"},
                               {"question": "Und wann?", "answers": [], "doc": None}]},
    ])
    assert is_conversation_file(path) and not is_conversation_file(ROOT / "eval" / "seed-qa.jsonl")
    first, second = load_conversations(path)
    assert (first.id, first.history, first.turn, first.sources) == ("c1#1", [], 0, ["d1"])
    assert (second.id, second.history, second.turn, second.answerable) == ("c1#2", ["Wer kam?"], 1, False)


@pytest.mark.parametrize("row, message", [
    ({"id": "c", "turns": []}, "turns"),
    ({"id": "c", "turns": [{"answers": []}]}, "question"),
    ({"id": "c", "turns": [{"question": "Wer?"}]}, "answers"),
])
def test_a_broken_conversation_file_names_the_line(tmp_path, row, message):
    from rag.errors import RagError
    from rag.evaluation import load_conversations

    with pytest.raises(RagError, match=f"Zeile 1.*{message}"):
        load_conversations(_chats(tmp_path, [row]))


def test_a_question_after_another_chat_gets_that_whole_chat_as_history():
    from rag.evaluation import QAItem, after_chats, load_conversations

    chats = load_conversations(ROOT / "eval" / "conversations-dev.jsonl")
    item = QAItem("q", "Wie hoch war die Arbeitslosenquote?", ["5,7 Prozent"], ["gnad-0536"], group="gnad-0536")
    (asked,) = after_chats([item], chats, seed=3)
    chat = [t for t in chats if t.id.split("#")[0] == next(t.id for t in chats if t.question == asked.history[0]).split("#")[0]]
    assert asked.history == [t.question for t in chat] and "gnad-0536" not in {t.group for t in chat}
    assert after_chats([item], chats, seed=3)[0].history == asked.history  # seeded


def test_eval_reports_each_kind_of_turn_alone_and_in_its_chat(tmp_path):
    from fakes import FakeEmbedder
    from rag.evaluation import run_eval

    doc = "000_aa78fff76f6e486e"
    path = _chats(tmp_path, [
        {"id": "c1", "turns": [
            {"question": "Wie lange dauerte der Videogipfel?", "answers": ["zwei Stunden"], "doc": doc, "kind": "first"},
            {"question": "Und wer hat das gemeldet?", "answers": ["Nachrichtenagenturen"], "doc": doc, "kind": "follow"},
            {"question": "Wie viele Kammern hat das menschliche Herz?", "answers": [], "doc": None, "kind": "unrelated"},
        ]},
    ])
    out = json.loads(run_eval(path, corpus=[ROOT / "corpus"], mode="bm25", k=3, cache_dir=tmp_path / "cache", as_json=True,
                              embedder=FakeEmbedder()))
    assert list(out) == [f"bm25 · {kind} {how}" for kind in ("first", "follow", "unrelated") for how in ("allein", "im Gespräch")]
    assert [m["questions"] for m in out.values()] == [1] * 6
    assert out["bm25 · follow allein"]["context_used"] == 0.0
    assert out["bm25 · unrelated im Gespräch"]["unanswerable"] == 1
    assert out["bm25 · unrelated im Gespräch"]["abstention_recall"] in (0.0, 1.0)


def test_eval_reports_first_turns_and_follow_ups_with_and_without_history(tmp_path):
    from fakes import FakeEmbedder
    from rag.evaluation import run_eval

    doc = "000_aa78fff76f6e486e"
    path = _chats(tmp_path, [
        {"id": "c1", "turns": [{"question": "Wie lange dauerte der Videogipfel?", "answers": ["zwei Stunden"], "doc": doc},
                               {"question": "Und wer hat das gemeldet?", "answers": ["Kreml"], "doc": doc}]},
    ])
    out = json.loads(run_eval(path, corpus=[ROOT / "corpus"], mode="bm25", k=3, cache_dir=tmp_path / "cache", as_json=True,
                              embedder=FakeEmbedder()))
    assert list(out) == ["bm25 · erste Fragen", "bm25 · Folgefragen ohne Verlauf", "bm25 · Folgefragen mit Verlauf"]
    assert [m["questions"] for m in out.values()] == [1, 1, 1]
    assert out["bm25 · Folgefragen ohne Verlauf"]["context_used"] == 0.0
    assert out["bm25 · Folgefragen mit Verlauf"]["context_used"] in (0.0, 1.0)


# ---------------------------------------------------------------- the real model


def test_a_follow_up_is_answered_from_the_article_of_the_previous_answer(seed_index):
    first = "Wie nannte Bidens Sicherheitsberater den Austausch mit Putin?"
    answer(seed_index, first, 3)
    follow = answer(seed_index, "Und welche Alternative hat Biden laut ihm aufgezeigt?", 3, history=[first])
    assert follow.context == first
    assert follow.passages[0].doc_id == SUMMIT_DOC and "Deeskalation" in follow.passages[0].text


def test_a_question_that_names_its_own_topic_is_answered_as_if_asked_alone(seed_index):
    q = "Welcher SPD-Altkanzler sitzt im Aufsichtsrat von Nord Stream 2?"
    alone = answer(seed_index, q, 3)
    after = answer(seed_index, q, 3, history=["Wie nannte Bidens Sicherheitsberater den Austausch mit Putin?"])
    assert after.passages[0].answer_text == alone.passages[0].answer_text
    assert "Schröder" in after.passages[0].text


def test_rag_chat_keeps_the_history_until_a_new_topic(seed_index):
    from typer.testing import CliRunner

    from rag import api
    from rag.cli import app
    from rag.service import RagService

    api.register(RagService.of(seed_index))
    script = "\n".join([
        "Wie nannte Bidens Sicherheitsberater den Austausch mit Putin?",
        "Und welche Alternative hat Biden laut ihm aufgezeigt?",
        "/neu",
        "Und welche Alternative hat Biden laut ihm aufgezeigt?",
        "/ende",
    ]) + "\n"
    res = CliRunner().invoke(app, ["chat", "--index", str(seed_index.root)], input=script)
    assert res.exit_code == 0, res.output
    turns = res.stdout.split("Antwort:")
    assert len(turns) == 4  # the help line, then three answers
    assert "Bezogen auf: Wie nannte Bidens" in turns[1] and "Deeskalation" in turns[2]
    assert "Neues Thema" in turns[2] and "Bezogen auf" not in turns[3]


# The chat a new user tried (issue 21): each turn must be read for what it asks, and an unrelated
# question inside the chat abstained on, as it is when asked alone.
FIVE_TURNS = [
    "Wie lange dauerte der Gipfel?",
    "Und wer hat das gemeldet?",
    "Worüber haben sie gesprochen?",
    "Was hat Biden angedroht?",
    "Wer hat die Fußball-WM 2014 gewonnen?",
]
REPORTERS = ("Nachrichtenagentur", "RT DE", "Weiße Haus", "Weißen Haus", "Kreml", "Interfax", "Tass", "Ria")


TOPICS = ("Ukraine", "Eskalation", "Nato", "Afghanistan")  # what the summit article says they spoke about
THREATS = ("Maßnahmen", "Sanktionen", "Konsequenzen")  # what Biden threatened, in the articles' words


def check_five_turns(answers: list[tuple[bool, str, str, str | None]]) -> None:
    """(abstained, answer phrase, first quote's highlighted sentence, „Bezogen auf“) per turn of FIVE_TURNS."""
    (a1, p1, _, c1), (a2, p2, _, c2), (a3, _, h3, c3), (a4, p4, _, _), (a5, _, _, c5) = answers
    assert not a1 and "Stunden" in p1 and c1 is None
    assert not a2 and any(r in p2 for r in REPORTERS), p2
    assert not a3 and any(t in h3 for t in TOPICS), h3
    assert not a4 and any(t in p4 for t in THREATS), p4
    assert a5 and c5 is None  # an abstention leans on nothing
    # „Bezogen auf“ names the question that set the subject, never the follow-up before.
    assert c2 == c3 == FIVE_TURNS[0]


def test_a_chat_reads_each_turn_for_what_it_asks_and_abstains_on_an_unrelated_question(seed_index):
    check_five_turns(_library_turns(seed_index))


def test_rag_chat_reads_the_five_turns_like_the_library(seed_index):
    from typer.testing import CliRunner

    from rag import api
    from rag.cli import app
    from rag.service import RagService

    api.register(RagService.of(seed_index))
    res = CliRunner().invoke(app, ["chat", "--index", str(seed_index.root)], input="\n".join([*FIVE_TURNS, "/ende"]) + "\n")
    assert res.exit_code == 0, res.output
    shown = res.stdout
    for q, (abstained, phrase, *_rest) in zip(FIVE_TURNS, _library_turns(seed_index), strict=True):
        assert (ABSTAIN_MESSAGE if abstained else f"Antwort: **{phrase}**") in shown, q
    assert shown.count(ABSTAIN_MESSAGE) == 1 and shown.count(f"Bezogen auf: {FIVE_TURNS[0]}") >= 2


def _library_turns(index) -> list[tuple[bool, str, str, str | None]]:
    got, history = [], []
    for q in FIVE_TURNS:
        ans = answer(index, q, 3, history=history)
        first = ans.passages[0] if ans.passages else None
        got.append((ans.abstained, ans.phrase, first.highlighted if first else "", ans.context))
        history.append(q)
    return got


@pytest.mark.parametrize("question, subject", [
    ("Wie lange dauerte der Gipfel?", "Gipfel"),
    ("Wer gewann den ersten Weltcupbewerb der Skispringerinnen in Nischnij Tagil?", "Weltcupbewerb Skispringerinnen Nischnij Tagil"),
    ("Wie viele waren es 2014?", "2014"),
    ("Und was sagen Sie dazu?", "Und was sagen Sie dazu?"),  # nothing named: the question itself
])
def test_the_reader_gets_the_subject_of_the_anchor_not_its_question_word(question, subject):
    from rag.conversation import subject_of

    assert subject_of(question) == subject


def _reading(strength: float, threshold: float = 0.03, context: bool = False):
    from rag.answering.evidence import Evidence
    from rag.answering.pipeline import TurnReading
    from rag.conversation import Context

    ctx = Context("Wie lange dauerte der Gipfel?", {"a": 1.0}) if context else None
    return TurnReading("Und wer?", [], Evidence(strength, "reader", threshold), ctx)


def test_a_follow_up_is_answered_in_the_chat_when_the_reader_accepts_that_reading():
    from rag import Config
    from rag.answering.pipeline import choose_reading

    cfg = Config(follow_up_threshold=0.04, follow_up_fallback=0.2, follow_up_alone_ratio=4.0)
    alone, chat = _reading(0.15), _reading(0.05, context=True)
    assert choose_reading(alone, chat, cfg) == (chat, False)  # accepted: the chat's, though alone is surer
    assert choose_reading(_reading(0.9), chat, cfg) == (_reading(0.9), False)  # alone ≥ 4 × as sure: a question of its own
    below = _reading(0.035, context=True)  # over the reader's threshold, under the follow-up's
    assert choose_reading(_reading(0.1), below, cfg) == (_reading(0.1), True)
    weak = _reading(0.01, context=True)
    assert choose_reading(_reading(0.3), weak, cfg) == (_reading(0.3), False)  # the chat holds nothing; alone is sure enough
    assert choose_reading(_reading(0.1), weak, cfg) == (_reading(0.1), True)  # neither: abstain, the surer withheld
    assert choose_reading(_reading(0.1), None, cfg) == (_reading(0.1), False)  # no chat reading: alone at the usual threshold
    assert choose_reading(None, None, cfg) == (None, False)


def test_a_reader_written_before_avoid_still_reads_and_its_spans_on_an_earlier_answer_are_dropped():
    from rag.answering.candidates import Candidate
    from rag.answering.pipeline import read
    from rag.answering.reading import Reading

    class OldReader:  # the reader protocol before `avoid`: it marks each sentence's first word
        def __call__(self, question, candidates, docs):
            return [Reading(1.0, (c.start, c.start + c.text.index(" "))) for c in candidates]

    said = Candidate("a", 0, 24, "Gipfel dauerte lange.", 1.0, phrase=(0, 6))
    other = Candidate("a", 25, 50, "Agenturen meldeten das.", 1.0, phrase=(25, 34))
    read(None, "Und wer hat das gemeldet?", [said, other], OldReader(), avoid=[("a", 0, 6)])
    assert said.span is None and said.phrase is None  # the earlier answer: neither span nor typed phrase
    assert other.span == (25, 34) and other.phrase == (25, 34)
