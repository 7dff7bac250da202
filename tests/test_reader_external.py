"""Bring-your-own reader models (rag.reader.external): each test saves its own tiny BERT into tmp_path."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rag.errors import ModelError
from rag.reader.external import (
    CrossEncoderReader,
    HFQuestionAnsweringReader,
    detect_reader_kind,
    load_external_reader,
)

QUESTION = "Wer regierte die Stadt?"
WINDOW = "Im Jahr 1990 regierte die Bürgermeisterin Anna Weber die Stadt Köln."
ANSWER = "Anna Weber"
OTHER = "Der Rhein fließt durch Köln. Die Stadt hat einen Dom."
TEXTS = [QUESTION, WINDOW, OTHER, "Wann fließt der Rhein?"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))  # file hashes of the fingerprints


def _tokenizer():
    """A WordPiece tokenizer over the test's own words (lower-cased, accents stripped like BERT's)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w for t in TEXTS for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t))})
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )


def _config(tokenizer, **extra):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, **extra,
    )


def _save(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _qa_model(folder: Path, seed: int = 0, train_steps: int = 0) -> Path:
    """A tiny BertForQuestionAnswering; with train_steps, fitted to answer QUESTION on WINDOW with ANSWER."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    model = BertForQuestionAnswering(_config(tokenizer))
    if train_steps:
        enc = tokenizer(QUESTION, WINDOW, return_offsets_mapping=True, return_tensors="pt")
        a = WINDOW.index(ANSWER)
        z = a + len(ANSWER)
        own = [t for t, s in enumerate(enc.sequence_ids(0)) if s == 1]
        offsets = enc.pop("offset_mapping")[0].tolist()
        start = next(t for t in own if offsets[t][0] == a)
        end = next(t for t in own if offsets[t][1] == z)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(train_steps):
            loss = model(**enc, start_positions=torch.tensor([start]), end_positions=torch.tensor([end])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    return _save(model, tokenizer, folder)


def _classifier(folder: Path, num_labels: int = 1) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(1)
    tokenizer = _tokenizer()
    return _save(BertForSequenceClassification(_config(tokenizer, num_labels=num_labels, initializer_range=0.5)), tokenizer, folder)


def _assert_one_line_error(path, match: str) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_external_reader(path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert "Frage-Antwort-Modell" in message or "nicht ladbar" in message


# --------------------------------------------------------------------------- extractive QA


def test_qa_reader_gives_one_span_inside_each_window(tmp_path):
    reader = HFQuestionAnsweringReader(_qa_model(tmp_path / "qa"))
    windows = [WINDOW, OTHER, "Köln.", ""]
    readings = reader.read(QUESTION, windows)
    assert len(readings) == len(windows)
    for window, reading in zip(windows[:3], readings):
        s, e = reading.span
        assert 0 <= s < e <= len(window)
        assert window[s:e] in window and window[s:e] == window[s:e].strip()
    assert readings[3].span is None  # an empty window has nothing to point at
    assert reader.read(QUESTION, []) == []


def test_qa_reader_margins_are_deterministic(tmp_path):
    reader = HFQuestionAnsweringReader(_qa_model(tmp_path / "qa"))
    windows = [WINDOW, OTHER, WINDOW + " " + OTHER]
    first = reader.read(QUESTION, windows)
    assert reader.read(QUESTION, windows) == first
    assert [reader.read(QUESTION, [w])[0].margin for w in windows] == pytest.approx([r.margin for r in first], abs=1e-4)


def test_qa_reader_returns_the_span_the_model_was_trained_on(tmp_path):
    reader = HFQuestionAnsweringReader(_qa_model(tmp_path / "qa", train_steps=25))
    reading = reader.read(QUESTION, [WINDOW])[0]
    assert reading.span is not None and WINDOW[slice(*reading.span)] == ANSWER
    assert reading.span == (WINDOW.index(ANSWER), WINDOW.index(ANSWER) + len(ANSWER))
    assert reading.margin > 0  # trained to answer: the span beats "no answer"


# --------------------------------------------------------------------------- cross-encoder


def test_cross_encoder_reader_gives_no_span_and_raw_scores(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = _classifier(tmp_path / "ce")
    reader = CrossEncoderReader(folder)
    readings = reader.read(QUESTION, [WINDOW, OTHER])
    assert [r.span for r in readings] == [None, None]
    assert readings[0].margin != readings[1].margin
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.inference_mode():
        logits = model(**tokenizer([QUESTION, QUESTION], [WINDOW, OTHER], padding=True, return_tensors="pt")).logits
    assert [r.margin for r in readings] == pytest.approx(logits[:, 0].tolist(), abs=1e-4)  # no sigmoid


def test_cross_encoder_saved_by_sentence_transformers_is_read(tmp_path):
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(_classifier(tmp_path / "plain")), device="cpu", local_files_only=True).save(str(tmp_path / "st"))
    assert (tmp_path / "st" / "config_sentence_transformers.json").is_file()
    reader = load_external_reader(tmp_path / "st")
    assert isinstance(reader, CrossEncoderReader)
    assert reader.read(QUESTION, [WINDOW]) == CrossEncoderReader(tmp_path / "plain").read(QUESTION, [WINDOW])


# --------------------------------------------------------------------------- choosing the adapter


def test_load_external_reader_picks_the_adapter_by_folder(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    qa = load_external_reader(_qa_model(tmp_path / "qa"))
    ce = load_external_reader(_classifier(tmp_path / "ce"))
    assert "HF_HUB_OFFLINE" not in os.environ and huggingface_hub.constants.HF_HUB_OFFLINE == offline  # only while loading
    assert isinstance(qa, HFQuestionAnsweringReader) and isinstance(ce, CrossEncoderReader)
    assert detect_reader_kind(tmp_path / "qa") == "hf-qa" and detect_reader_kind(tmp_path / "ce") == "cross-encoder"
    assert re.fullmatch(r"hf-qa:qa@sha256:[0-9a-f]{16}", qa.fingerprint)
    assert re.fullmatch(r"cross-encoder:ce@sha256:[0-9a-f]{16}", ce.fingerprint)
    other = load_external_reader(_qa_model(tmp_path / "qa2" / "qa", seed=5))
    assert other.fingerprint != qa.fingerprint  # same folder name, other weights


def test_load_external_reader_rejects_what_is_no_reader(tmp_path):
    from transformers import BertModel

    (tmp_path / "empty").mkdir()
    _assert_one_line_error(tmp_path / "empty", "config.json")
    _assert_one_line_error(tmp_path / "missing", "Ordner fehlt")
    tokenizer = _tokenizer()
    _assert_one_line_error(_save(BertModel(_config(tokenizer)), tokenizer, tmp_path / "bare"), "BertModel")
    _assert_one_line_error(_classifier(tmp_path / "nli", num_labels=3), "3 Ausgaben")


def test_load_external_reader_reports_a_broken_model_in_one_line(tmp_path):
    folder = _qa_model(tmp_path / "qa")
    (folder / "model.safetensors").write_bytes(b"not a model")
    _assert_one_line_error(folder, "nicht ladbar")


def test_config_reader_path_answers_with_the_users_model(tmp_path, fake_seed_index):
    """`Config(reader=PATH)`: the answer's bold phrase is the user's model's span, in the quote."""
    from rag.answering import answer, make_reader
    from rag.answering.neural import ModelReader
    from rag.reader.external import HFQuestionAnsweringReader

    folder = _qa_model(tmp_path / "qa")
    cfg = fake_seed_index.config.replace(reader=str(folder), reader_threshold=-1e9)
    reader = make_reader(cfg)
    assert isinstance(reader, ModelReader) and isinstance(reader.model, HFQuestionAnsweringReader)
    ans = answer(fake_seed_index.with_config(cfg), "Wie lange dauerte der Videogipfel?", k=3)
    assert not ans.abstained and ans.passages
    for p in ans.passages:
        assert fake_seed_index.documents[p.doc_id].text[p.start : p.end] == p.text
        if p.phrase:
            assert p.highlight[0] <= p.phrase[0] < p.phrase[1] <= p.highlight[1]
