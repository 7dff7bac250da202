"""Readers the user brings: `Config(reader=PATH)` with PATH a local model folder.

Two kinds of folder are understood, told apart by their files (`detect_reader_kind`):

- "hf-qa": a Hugging Face extractive-QA model (`config.json` architecture ``…ForQuestionAnswering``
  plus a fast tokenizer). `HFQuestionAnsweringReader` reads every (question, window) pair, takes the
  best span start ≤ end, at most 30 tokens, inside the window's tokens, and its margin over "no answer"
  at the first token (SQuAD 2.0 style): best start + end logit − (start_logit[0] + end_logit[0]).
- "cross-encoder": a sentence-transformers `CrossEncoder` with one output (written by
  `CrossEncoder.save`: ``config_sentence_transformers.json`` with ``"model_type": "CrossEncoder"``,
  or any ``…ForSequenceClassification`` folder with a single label). `CrossEncoderReader` gives no
  span (the project's phrase finder picks one) and the raw logit as margin: the model's saved
  activation (sigmoid for one label) is bypassed, so margins keep their spread and stay comparable
  across windows of one question.

Both load offline (`local_files_only=True`, Hugging Face offline mode switched on only while loading),
never download, and raise `ModelError` with one German line when the folder does not fit or does not
load. torch/transformers/sentence-transformers are imported only when a reader is built.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ModelError
from .runtime import WindowReader, WindowReading

__all__ = ["HFQuestionAnsweringReader", "CrossEncoderReader", "load_external_reader", "detect_reader_kind"]

QA_KIND = "hf-qa"
CROSS_ENCODER_KIND = "cross-encoder"
MAX_LEN = 384  # tokens per (question, window) pair, at most
MAX_QUESTION = 64  # question tokens kept (a longer question would leave no room for the window)
MAX_ANSWER = 30  # answer tokens, at most
NO_WINDOW_MARGIN = -1e4  # margin of a window with no tokens left to read
BATCH = 16

_EXPECTED = "erwartet ein Frage-Antwort-Modell (Hugging Face) oder einen CrossEncoder"


def _fail(path: Path, reason: str) -> ModelError:
    return ModelError(f"Kein Lesemodell unter {path}: {reason}; {_EXPECTED}.")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    text = text if len(text) <= 200 else text[:199] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num_labels(config: dict) -> int:
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    return int(config.get("num_labels", 2))  # transformers' default when neither is saved


def detect_reader_kind(path: Path) -> str:
    """"hf-qa" or "cross-encoder" by the folder's files, else `ModelError` (nothing is imported or loaded)."""
    path = Path(path)
    if not path.is_dir():
        raise _fail(path, "Ordner fehlt")
    st_config = _read_json(path / "config_sentence_transformers.json") or {}
    if st_config.get("model_type") == "CrossEncoder":
        return CROSS_ENCODER_KIND
    config = _read_json(path / "config.json")
    if config is None:
        raise _fail(path, "keine lesbare config.json")
    archs = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if any(a.endswith("ForQuestionAnswering") for a in archs):
        return QA_KIND
    if any(a.endswith("ForSequenceClassification") for a in archs):
        n = _num_labels(config)
        if n == 1:
            return CROSS_ENCODER_KIND
        raise _fail(path, f"Klassifikationsmodell mit {n} Ausgaben statt einer")
    if st_config:
        raise _fail(path, f"sentence-transformers-Modell vom Typ „{st_config.get('model_type', 'SentenceTransformer')}“")
    raise _fail(path, f"Architektur {', '.join(archs) or 'unbekannt'}")


def _fingerprint(kind: str, path: Path) -> str:
    from ..embedding import folder_hash  # the same file set and hashes as a user's embedding model

    return f"{kind}:{path.name}@sha256:{folder_hash(path)[:16]}"


_offline_lock = threading.Lock()
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face offline mode while loading, then the process's settings as before. huggingface_hub
    reads HF_HUB_OFFLINE once at import, so its constant is switched too; `local_files_only=True`
    on every load is the guarantee, this is the second belt."""
    with _offline_lock:
        saved = {k: os.environ.get(k) for k in _OFFLINE_ENV}
        os.environ.update({k: "1" for k in _OFFLINE_ENV})
        constants = None
        with contextlib.suppress(ImportError):
            import huggingface_hub.constants as constants
        old = getattr(constants, "HF_HUB_OFFLINE", None)
        if constants is not None:
            constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            if constants is not None:
                constants.HF_HUB_OFFLINE = old
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _quiet_transformers() -> None:
    with contextlib.suppress(Exception):  # cosmetic only: no "Loading weights" bars on the console
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _checked(path: str | Path, kind: str, wrong: str) -> tuple[Path, str]:
    """The resolved folder and its fingerprint, or `ModelError` when the folder is not of `kind`."""
    path = Path(path).expanduser().resolve()
    if detect_reader_kind(path) != kind:
        raise _fail(path, wrong)
    return path, _fingerprint(kind, path)


@contextlib.contextmanager
def _loading(path: Path) -> Iterator[None]:
    """Quiet and offline while a model loads; any failure (a missing package too) becomes one German line."""
    try:
        _quiet_transformers()
        with _offline():
            yield
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"Lesemodell unter {path} nicht ladbar: {_one_line(e)}") from e


class HFQuestionAnsweringReader:
    """A Hugging Face extractive-QA model (start/end logits per token). Thread-safe."""

    kind = QA_KIND

    def __init__(self, path: str | Path):
        self.path, self.fingerprint = _checked(path, QA_KIND, "kein Frage-Antwort-Modell")
        with _loading(self.path):
            import torch
            from transformers import AutoModelForQuestionAnswering, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModelForQuestionAnswering.from_pretrained(str(self.path), local_files_only=True)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"Lesemodell unter {self.path}: der Tokenizer liefert keine Zeichenpositionen (kein „fast“-Tokenizer).")
        self.model.eval()
        self._torch = torch
        limits = [MAX_LEN, getattr(self.tokenizer, "model_max_length", None), getattr(self.model.config, "max_position_embeddings", None)]
        self.max_len = min(int(x) for x in limits if isinstance(x, (int, float)) and x > 0)
        self._inputs = set(getattr(self.tokenizer, "model_input_names", None) or ["input_ids", "attention_mask", "token_type_ids"])
        self._lock = threading.Lock()

    def _question(self, question: str) -> str:
        """The question cut to its first MAX_QUESTION tokens, so a window always fits beside it."""
        enc = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        return question if len(offsets) <= MAX_QUESTION else question[: offsets[MAX_QUESTION - 1][1]]

    def read(
        self, question: str, windows: Sequence[str], focus: Sequence[tuple[int, int]] | None = None,
        avoid: Sequence[Sequence[tuple[int, int]]] | None = None, batch: int = BATCH,
    ) -> list[WindowReading]:
        # `focus` (where the span should lie) is not used: the caller drops spans outside it.
        """For each window: the best span (characters inside the window) and its margin over "no answer";
        no span touches the window's `avoid` ranges."""
        out: list[WindowReading] = [WindowReading(None, NO_WINDOW_MARGIN)] * len(windows)
        if not windows:
            return out
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # like lengths share a batch
        with self._lock, self._torch.inference_mode():
            q = self._question(question)
            for b in range(0, len(order), batch):
                part = order[b : b + batch]
                enc = self.tokenizer(
                    [q] * len(part), [windows[i] for i in part], truncation="only_second", max_length=self.max_len,
                    padding=True, return_offsets_mapping=True, return_tensors="pt",
                )
                inputs = {k: v for k, v in enc.items() if k in self._inputs}
                result = self.model(**inputs)
                starts = result.start_logits.float().cpu().numpy()
                ends = result.end_logits.float().cpu().numpy()
                offsets = enc["offset_mapping"].numpy()
                for r, i in enumerate(part):
                    out[i] = self._reading(
                        windows[i], enc.sequence_ids(r), enc["input_ids"][r].numpy(), offsets[r], starts[r], ends[r],
                        avoid[i] if avoid is not None else (),
                    )
        return out

    def _reading(
        self, window: str, seq_ids: list, ids: np.ndarray, offsets: np.ndarray, st: np.ndarray, en: np.ndarray,
        avoid: Sequence[tuple[int, int]] = (),
    ) -> WindowReading:
        from .model import best_span, blocked_tokens

        own = [t for t, s in enumerate(seq_ids) if s == 1]
        if not own:
            return WindowReading(None, NO_WINDOW_MARGIN)
        blocked = blocked_tokens([tuple(o) for o in offsets], own[0], own[-1], 0, avoid)
        a, z, score = best_span(st, en, own[0], own[-1], MAX_ANSWER, blocked)
        if not np.isfinite(score):
            return WindowReading(None, NO_WINDOW_MARGIN)
        null = self._null_position(ids, seq_ids)
        margin = score - float(st[null] + en[null])
        s, e = int(offsets[a][0]), int(offsets[z][1])
        while s < e and window[s].isspace():
            s += 1
        while e > s and window[e - 1].isspace():
            e -= 1
        return WindowReading((s, e) if 0 <= s < e <= len(window) else None, margin)

    def _null_position(self, ids: np.ndarray, seq_ids: list) -> int:
        """Where "no answer" is scored: the CLS token (position 0 for BERT-style right padding)."""
        cls = getattr(self.tokenizer, "cls_token_id", None)
        if cls is not None:
            hits = np.flatnonzero(ids == cls)
            if len(hits):
                return int(hits[0])
        return 0


class CrossEncoderReader:
    """A sentence-transformers CrossEncoder with one output: margin = raw logit, no span. Thread-safe."""

    kind = CROSS_ENCODER_KIND

    def __init__(self, path: str | Path):
        self.path, self.fingerprint = _checked(path, CROSS_ENCODER_KIND, "kein CrossEncoder")
        with _loading(self.path):
            import torch
            from sentence_transformers import CrossEncoder

            self.model = CrossEncoder(str(self.path), device="cpu", local_files_only=True)
        if self.model.num_labels != 1:
            raise _fail(self.path, f"CrossEncoder mit {self.model.num_labels} Ausgaben statt einer")
        self._identity = torch.nn.Identity()  # raw logits: the saved activation (sigmoid) is bypassed
        self._lock = threading.Lock()

    def read(
        self, question: str, windows: Sequence[str], focus: Sequence[tuple[int, int]] | None = None,
        avoid: Sequence[Sequence[tuple[int, int]]] | None = None, batch: int = BATCH,
    ) -> list[WindowReading]:
        # `focus` and `avoid` (where the span should and must not lie) do not apply: no span.
        """For each window: no span, and the model's raw score as margin."""
        if not windows:
            return []
        with self._lock:
            scores = self.model.predict(
                [(question, w) for w in windows], batch_size=batch, activation_fn=self._identity,
                show_progress_bar=False, convert_to_numpy=True,
            )
        return [WindowReading(None, float(s)) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]


def load_external_reader(path: str | Path) -> WindowReader:
    """The adapter that fits the folder at `path` (see `detect_reader_kind`); `ModelError` otherwise."""
    path = Path(path).expanduser().resolve()
    if detect_reader_kind(path) == QA_KIND:
        return HFQuestionAnsweringReader(path)
    return CrossEncoderReader(path)
