"""The model reader at answer time, and the scorer that ranks by its calibrated probability.

`ModelReader` (the trained reader, or a model the user brings) reads the windows the answer stage
planned (`rag.answering.windows`: `Candidate.window`), each once, and gives every sentence in them
its best span. The trained reader was trained with one softmax over all windows of a question and
"no answer" (shared-norm, `rag.reader.train`), so its scores combine into log-probabilities that
mean the same in every window (`shared_norm`). Candidates it does not read keep the rules' typed
phrase and no opinion.

`ReaderScorer` ranks by the calibrated probability that a sentence holds the answer (`Combiner`,
fitted and shipped with the weights, with the abstention threshold). With a model the user brings
(no combiner) it ranks by the reader's margin and abstains below `Config.reader_threshold`.

`Config.reader` names the model: "trained" (the weights shipped in `rag/reader/weights/`) or the
path of a local Hugging Face extractive-QA or CrossEncoder folder (`rag.reader.external`).
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import Config
from ..errors import ModelError
from .calibration import Combiner
from .candidates import Candidate
from .phrases import complete_value
from .reading import Documents, Reading, accepts_avoid, overlaps

__all__ = ["ModelReader", "ReaderScorer", "load_window_reader", "shared_norm", "WEIGHTS_DIR"]

# The shipped reader (written by `rag train-reader`).
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "reader" / "weights"


@functools.lru_cache(maxsize=4)
def load_window_reader(spec: str, backend: str = "torch"):
    """The network behind `Config.reader`: the shipped weights for "trained", else a user's folder."""
    from ..reader.runtime import NeuralReader

    if spec == "trained":
        return NeuralReader(WEIGHTS_DIR, backend=backend)
    from ..reader.external import load_external_reader

    return load_external_reader(Path(spec).expanduser())


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def shared_norm(readings: Sequence, window_of: Sequence[object]) -> tuple[list[float], float] | None:
    """Log-probabilities of each reading's span among all windows read for a question, and of
    "no answer": one softmax over every window's start (and end) logits, as in training.
    `window_of[i]` names the window of `readings[i]` (several readings share a window). None when
    the reader gives no token logits (a CrossEncoder)."""
    if not readings or any(r.norm is None or r.score is None for r in readings):
        return None
    windows = {w: r for w, r in zip(window_of, readings)}
    z_start = _logsumexp([r.norm[0] for r in windows.values()])
    z_end = _logsumexp([r.norm[1] for r in windows.values()])
    null = _logsumexp([r.null[0] for r in windows.values()]) - z_start + _logsumexp([r.null[1] for r in windows.values()]) - z_end
    return [r.score - z_start - z_end for r in readings], null


class ModelReader:
    """Reads the planned windows; every candidate with a window gets a span and the reader's scores."""

    reads_windows = True  # the answer stage plans windows for it (rag.answering.windows)

    def __init__(self, config: Config, model=None):
        self.config = config
        self.model = model if model is not None else load_window_reader(config.reader, config.reader_backend)

    def __call__(
        self, question: str, candidates: Sequence[Candidate], docs: Documents, avoid: Sequence[tuple[str, int, int]] = ()
    ) -> list[Reading]:
        readings = [Reading(0.0, None if overlaps(c.phrase, c.doc_id, avoid) else c.phrase) for c in candidates]
        read = [i for i, c in enumerate(candidates) if c.window is not None]
        if not read:
            return readings
        windows = [(candidates[i].doc_id, *candidates[i].window) for i in read]
        texts = [docs.documents[d].text[a:b] for d, a, b in windows]
        focus = [(candidates[i].start - a, candidates[i].end - a) for i, (_, a, _) in zip(read, windows)]
        # The avoided answers as characters of each window they touch.
        kept = [[(max(s, a) - a, min(e, b) - a) for d2, s, e in avoid if d2 == d and s < b and a < e] for d, a, b in windows]
        # Only a chat's follow-up avoids anything (a network without `avoid` is asked only otherwise:
        # its spans that touch an avoided answer are dropped below).
        results = self.model.read(question, texts, focus=focus, **({"avoid": kept} if any(kept) and accepts_avoid(self.model.read) else {}))
        normed = shared_norm(results, windows)
        for n, (i, (fs, fe), r) in enumerate(zip(read, focus, results, strict=True)):
            c = candidates[i]
            span = readings[i].span  # the rules' phrase, unless it is an avoided answer
            if r.span is not None and fs <= r.span[0] < r.span[1] <= fe:
                s, e = complete_value(c.text, (r.span[0] - fs, r.span[1] - fs))
                if not overlaps((c.start + s, c.start + e), c.doc_id, avoid):  # completing may reach into one
                    span = (c.start + s, c.start + e)
            log_prob, null = (normed[0][n], normed[1]) if normed else (None, None)
            readings[i] = Reading(score=r.margin, span=span, no_answer=-r.margin, log_prob=log_prob, log_prob_null=null)
        return readings


@functools.lru_cache(maxsize=1)
def shipped_combiner() -> Combiner:
    """The combiner and threshold shipped with the trained reader (its manifest)."""
    from ..reader.runtime import read_manifest

    weights_dir = WEIGHTS_DIR
    manifest = read_manifest(weights_dir)
    if "combiner" not in manifest:
        raise ModelError(f"Leser unter {weights_dir} hat keinen Kombinierer (manifest.json); bitte `rag train-reader` ausführen.")
    return Combiner.from_dict(manifest["combiner"])


class ReaderScorer:
    """Ranks by the probability that a sentence holds the answer (the trained reader's `Combiner`);
    for a model the user brings, by the reader's margin. Sentences the reader did not read rank
    below every read one. `threshold`: in the same units, the abstention limit."""

    def __init__(self, config: Config, combiner: Combiner | None = None):
        self.config = config
        if combiner is None and config.reader == "trained":
            combiner = shipped_combiner()
        self.combiner = combiner
        default = combiner.threshold if combiner is not None else 0.0
        self.threshold = default if config.reader_threshold is None else config.reader_threshold
        # The read sentences' embeddings only when the combiner weighs them (rag.answering.pipeline).
        self.needs_vectors = combiner is not None and combiner.needs_vectors

    def __call__(self, question: str, candidates: Sequence[Candidate]) -> np.ndarray:
        read = np.array([c.no_answer is not None for c in candidates], dtype=bool)
        if self.combiner is not None and all(c.log_prob is not None for c, r in zip(candidates, read) if r):
            scores = self.combiner(candidates)
            floor = 0.0
        else:
            scores = np.array([c.span_score for c in candidates], dtype=np.float64)
            floor = float(scores[read].min()) if read.any() else 0.0
        # Unread sentences below every read one, in the rules' order among themselves.
        rest = np.array([c.prior + c.lexical for c in candidates], dtype=np.float64)
        return np.where(read, scores, floor - 1e3 + rest)
