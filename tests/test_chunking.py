"""Chunking: exact offsets, size bounds, coverage, German sentence ends; sentence spans."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunking import Chunk, chunk_document
from rag.corpus import Document, load_corpus
from rag.text import split_sentences

SEEDS = Path(__file__).resolve().parent.parent / "corpus"


def doc(text: str, doc_id: str = "d") -> Document:
    return Document(id=doc_id, text=text, title="t", date=None, source=f"{doc_id}.txt")


# --- German-like random text ------------------------------------------------------------------

WORDS = st.sampled_from(
    "der die das und Straße Größe Bürger Ärger über Öffnung Maß heißt Präsident Übergang Gespräch "
    "Kanzlerin München Österreich Gipfel Biden Putin Kreml sagte wurde außerdem rund Stunden Uhr "
    "Dezember Nato Müller Schöne äußerst Fußball".split()
)
TOKENS = st.one_of(
    WORDS,
    WORDS,
    WORDS,
    st.sampled_from(["z. B.", "Dr.", "Prof. Dr.", "Nr. 5", "bzw.", "u. a.", "ca.", "St.", "usw.", "Mio.", "Mrd.", "Jan.", "d. h."]),
    st.sampled_from(["18.15 Uhr", "7. Dezember", "1.000", "2021", "3,5 Prozent"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüßÄÖÜ", min_size=1, max_size=14),
)
ENDS = st.sampled_from([".", "!", "?", ":", ";", ".“", "!“", '."', ".«", ","])


@st.composite
def sentences(draw):
    words = draw(st.lists(TOKENS, min_size=1, max_size=25))
    s = " ".join(words)
    if draw(st.booleans()):
        s = "„" + s
        return s + draw(st.sampled_from([".“", "“.", "?“"]))
    return s[0].upper() + s[1:] + draw(ENDS)


@st.composite
def german_texts(draw):
    paragraphs = []
    for _ in range(draw(st.integers(1, 6))):
        sents = draw(st.lists(sentences(), min_size=1, max_size=8))
        paragraphs.append(" ".join(sents))
    seps = st.sampled_from(["\n\n", "\n", " \n\n  ", "\n\n\n"])
    text = paragraphs[0]
    for p in paragraphs[1:]:
        text += draw(seps) + p
    return draw(st.sampled_from(["", "  ", "\n"])) + text + draw(st.sampled_from(["", " ", "\n\n"]))


def check_chunks(text: str, chunks: list[Chunk], chunk_size: int) -> None:
    assert chunks or not text.strip()
    covered = [False] * len(text)
    prev_start = prev_end = -1
    for c in chunks:
        assert c.text, "empty chunk"
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip(), "chunk edges are stripped"
        assert len(c.text) <= chunk_size
        assert c.start > prev_start and c.end > prev_end, "starts/ends strictly increasing"
        prev_start, prev_end = c.start, c.end
        for i in range(c.start, c.end):
            covered[i] = True
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered chars at {missing[:5]}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=german_texts(), size=st.sampled_from([40, 80, 200, 600]), overlap_frac=st.sampled_from([0.0, 0.1, 0.2, 0.5]))
def test_chunks_exact_bounded_covering(text, size, overlap_frac):
    chunks = chunk_document(doc(text), chunk_size=size, chunk_overlap=int(size * overlap_frac))
    check_chunks(text, chunks, size)


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=0, max_size=400), size=st.integers(2, 120))
def test_chunks_on_arbitrary_text(text, size):
    """Any text at all (control chars, long words, no spaces): offsets stay exact, nothing is lost."""
    chunks = chunk_document(doc(text), chunk_size=size, chunk_overlap=size // 4)
    check_chunks(text, chunks, size)


def test_short_document_is_one_chunk():
    d = doc("Ein kurzer Artikel. Mit zwei Sätzen.")
    assert chunk_document(d) == [Chunk("d", 0, len(d.text), d.text)]
    assert chunk_document(doc("   \n ")) == []


def test_overlap_repeats_text():
    sents = [f"Satz Nummer {n} über den Gipfel in München." for n in range(40)]
    d = doc(" ".join(sents))
    chunks = chunk_document(d, chunk_size=200, chunk_overlap=90)
    assert len(chunks) > 3
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:])), "some chunks overlap"
    for c in chunks:  # boundaries at sentence ends
        assert c.text.endswith("."), c.text


ABBREV_TEXT = (
    "Die Regierung plant z. B. neue Sanktionen gegen Moskau und weitere Maßnahmen. "
    "Laut Dr. Müller vom Institut Nr. 7 beginnt das Gespräch um 18.15 Uhr am 7. Dezember in Genf. "
    "Beteiligt sind u. a. Prof. Dr. Schmidt bzw. seine Mitarbeiter aus St. Gallen. "
    "„Wir erwarten ca. 3 Mio. Euro Kosten usw.“, sagte er am Montag. "
    "Die Nato-Staaten beraten über weitere Schritte. Niemand weiß, was Putin plant! "
    "Der Kreml schweigt; die USA warnen. Was kommt danach? "
)


@pytest.mark.parametrize("size", [100, 120, 150, 220, 600])
def test_abbreviations_never_end_a_chunk(size):
    text = (ABBREV_TEXT * 3).strip()
    chunks = chunk_document(doc(text), chunk_size=size, chunk_overlap=size // 5)
    check_chunks(text, chunks, size)
    for c in chunks:
        for abbr in ("z. B.", "Dr.", "Nr.", "u. a.", "Prof.", "bzw.", "St.", "ca.", "Mio.", "18.", "7."):
            assert not c.text.endswith(abbr), (abbr, c.text)
        # every chunk ends at a sentence end (all sentences here are shorter than the chunk size)
        assert re.search(r"[.!?;“]$", c.text), c.text
        if c.end < len(text):
            assert not re.search(r"\b(?:z\. B|Dr|Nr|u\. a|Prof|bzw|St|ca|Mio|\d+)\.$", c.text), c.text


def test_split_sentences_german():
    text = (
        "Das Treffen beginnt z. B. um 18.15 Uhr am 7. Dezember. Dr. Müller sagte: „Wir warten ab.“ "
        "Danach ging er!\n\nNeuer Absatz ohne Punkt\n\nUnd noch ein Satz?"
    )
    spans = split_sentences(text)
    sents = [text[s:e] for s, e in spans]
    assert sents[0] == "Das Treffen beginnt z. B. um 18.15 Uhr am 7. Dezember."
    assert any(s.startswith("Dr. Müller sagte") for s in sents)
    assert "Neuer Absatz ohne Punkt" in sents
    assert sents[-1] == "Und noch ein Satz?"
    check_sentence_spans(text, spans)


def check_sentence_spans(text: str, spans: list[tuple[int, int]]) -> None:
    covered = [False] * len(text)
    prev_end = 0
    for s, e in spans:
        assert prev_end <= s < e <= len(text)
        assert text[s:e].strip() == text[s:e], "spans start and end on non-whitespace"
        prev_end = e
        for i in range(s, e):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


def test_split_sentences_closing_quote_stays_with_sentence():
    text = 'Sie sagte: "Das ist eine Gelegenheit für ein Gespräch."\n\nPolitisch heikle Treffen'
    sents = [text[s:e] for s, e in split_sentences(text)]
    assert sents[-1] == "Politisch heikle Treffen"
    assert all(any(ch.isalnum() for ch in s) for s in sents)
    assert sents[-2].endswith('Gespräch."')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=german_texts())
def test_split_sentences_property(text):
    spans = split_sentences(text)
    check_sentence_spans(text, spans)
    for phrase in ("z. B.", "18.15 Uhr", "7. Dezember", "Prof. Dr."):  # never cut
        for m in re.finditer(re.escape(phrase), text):
            assert any(s <= m.start() and m.end() <= e for s, e in spans), (phrase, text)


def test_split_sentences_empty():
    assert split_sentences("") == []
    assert split_sentences(" \n ") == []


def test_seed_chunks_are_sensible():
    load = load_corpus(SEEDS)
    total = 0
    for d in load.documents:
        chunks = chunk_document(d, 600, 120)
        check_chunks(d.text, chunks, 600)
        assert 5 <= len(chunks) <= 30
        assert sum(len(c.text) for c in chunks) >= len(d.text.replace("\n\n", "")) * 0.9
        assert all(len(c.text) >= 30 for c in chunks)
        total += len(chunks)
        sents = split_sentences(d.text)
        check_sentence_spans(d.text, sents)
        assert 20 <= len(sents) <= 80
    print(f"seed chunks: {total}")
    assert 40 <= total <= 120
