"""Running the trained reader at answer time.

`NeuralReader(weights_dir)` reads (question, window) pairs and returns, per window, the best answer
span and its margin over "no answer". The network is e5's lower layers (from the locally rebuilt
multilingual-e5-small) under the shipped fine-tuned top layers and head. By default it runs the
network on torch (bf16 products where the CPU has them, else float32); `backend="onnx-int8"` runs
an int8 ONNX export of it (exported once into the cache, like the embedding encoder): faster, but
measured 6 points of answer F1 worse on the news dev split, because the int8 activations of the
lower layers blur what the top layers read.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import ModelError
from .model import blocked_tokens, encode_pair, pad_batch, read_span

EXPORT_VERSION = 1


@dataclass(frozen=True)
class WindowReading:
    span: tuple[int, int] | None  # the answer's characters inside the window (None: the reader gives no span)
    margin: float  # how sure the reader is that the window answers (span score minus "no answer" score)
    # For a reader with token logits (all but a CrossEncoder): the span's score (start + end logit),
    # the window's "no answer" logits (start, end), and the log-sum-exp of its start and end logits
    # over "no answer" and every window token. The trained reader was trained with one softmax over
    # all windows of a question, so these combine into probabilities across windows
    # (rag.answering.neural.shared_norm).
    score: float | None = None
    null: tuple[float, float] | None = None
    norm: tuple[float, float] | None = None


class WindowReader(Protocol):
    """Reads (question, window) pairs: the trained reader, or a model the user brings."""

    fingerprint: str

    def read(
        self, question: str, windows: Sequence[str], focus: Sequence[tuple[int, int]] | None = None,
        avoid: Sequence[Sequence[tuple[int, int]]] | None = None,
    ) -> list[WindowReading]: ...


def read_manifest(weights_dir: Path) -> dict:
    try:
        return json.loads((weights_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"Leser unter {weights_dir} ist unvollständig (manifest.json: {e}).") from e


def _load_torch(weights_dir: Path, manifest: dict, model_dir: Path):
    import torch
    from safetensors.torch import load_file

    from .model import build_network

    net, _ = build_network(model_dir, int(manifest["trainable_layers"]))
    state = {k: v.float() for k, v in load_file(str(weights_dir / "reader.safetensors")).items()}
    missing = [k for k in state if k not in net.state_dict()]
    if missing:
        raise ModelError(f"Leser unter {weights_dir} passt nicht zum Netz ({missing[0]}).")
    net.load_state_dict(state, strict=False)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch


def export_int8(weights_dir: Path, manifest: dict, model_dir: Path, dest: Path) -> Path:
    """The whole reader as one int8 ONNX graph (input ids and mask → start/end logits)."""
    from ..onnx_backend import export_quantized

    net, torch = _load_torch(weights_dir, manifest, model_dir)

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, input_ids, attention_mask):
            return self.net(input_ids, attention_mask > 0)

    return export_quantized(Logits().eval(), dest, "logits", {0: "b", 1: "l"})


def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX-512 BF16 or AMX); `RAG_READER_FP32=1` says no."""
    if os.environ.get("RAG_READER_FP32"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(?:avx512_bf16|amx_bf16)\b", flags))


class NeuralReader:
    """The trained span reader. Thread-safe; one instance per process is enough."""

    def __init__(self, weights_dir: Path, backend: str = "torch"):
        from ..e5model import cache_dir, ensure_e5_model_dir
        from ..onnx_backend import shared_tokenizer

        self.weights_dir = Path(weights_dir)
        self.manifest = read_manifest(self.weights_dir)
        s = self.manifest["settings"]
        self.max_len, self.max_question, self.max_answer = s["max_len"], s["max_question"], s["max_answer_tokens"]
        model_dir = ensure_e5_model_dir()
        self.tokenizer = shared_tokenizer(str(model_dir / "tokenizer.json"))  # the embedder's, loaded once
        self.backend = backend
        self._lock = threading.Lock()
        if backend == "torch":
            self._net, self._torch = _load_torch(self.weights_dir, self.manifest, model_dir)
            # bf16 matrix products where the CPU has them natively: measured on 120 news dev
            # questions, the same answer F1 (0.621) in 35 % less time. Elsewhere bf16 is emulated
            # and slower than float32, so float32 stays.
            self.precision = "bf16" if cpu_has_bf16() else "fp32"
            return
        self.precision = "int8"
        key = hashlib.sha256(f"{self.manifest.get('weights_sha256')}:{model_dir.name}:{EXPORT_VERSION}".encode()).hexdigest()[:16]
        graph = cache_dir() / "onnx" / f"reader-{key}-int8.onnx"
        if not graph.is_file():
            export_int8(self.weights_dir, self.manifest, model_dir, graph)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"Leser-Modell {graph} nicht ladbar: {e}") from e

    @property
    def fingerprint(self) -> str:
        return f"reader@{str(self.manifest.get('weights_sha256', ''))[:16]}+{self.backend}-{self.precision}"

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self._lock:
            if self.backend == "torch":
                torch = self._torch
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                    return self._net(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
            return self._session.run(None, {"input_ids": ids, "attention_mask": mask.astype(np.int64)})[0]

    def read(
        self, question: str, windows: Sequence[str], focus: Sequence[tuple[int, int]] | None = None,
        avoid: Sequence[Sequence[tuple[int, int]]] | None = None, batch: int = 16,
    ) -> list[WindowReading]:
        """For each window, its best span and margin. `focus`: per window, the characters the span
        must lie in (the candidate sentence; its neighbours are context only); `avoid`: per window,
        characters no span may touch (a chat's earlier answers: a follow-up asks for something new)."""
        # A window shared by several entries (candidates next to each other, each its own focus) is
        # read once.
        unique = list(dict.fromkeys(windows))
        encs = {w: encode_pair(self.tokenizer, question, w, self.max_question, self.max_len) for w in unique}
        logits: dict[str, np.ndarray] = {}
        order = sorted(unique, key=lambda w: len(encs[w].ids))
        for b in range(0, len(order), batch):
            part = order[b : b + batch]
            ids, mask = pad_batch([encs[w].ids for w in part], 1)
            for w, row, n in zip(part, self._logits(ids, mask), mask.sum(1)):
                logits[w] = row[:n]
        # An avoided answer is out of the question: its tokens leave the window's normalisation too,
        # so the other spans' probabilities are conditioned on "not that answer".
        # Keyed by the ranges too: two articles may share a window's text (wire copies).
        avoided = [tuple(avoid[i]) if avoid is not None else () for i in range(len(windows))]
        norms = {(w, a): window_norm(encs[w], logits[w], a) for w, a in dict.fromkeys(zip(windows, avoided))}
        out: list[WindowReading] = []
        for i, w in enumerate(windows):
            enc = encs[w]
            st, en = logits[w][:, 0], logits[w][:, 1]
            null, norm = (float(st[0]), float(en[0])), norms[(w, avoided[i])]
            first, last = _token_range(enc, focus[i] if focus is not None else None)
            if last < first:  # the focus was cut off by the length limit
                out.append(WindowReading(None, NO_SPAN, NO_SPAN, null, norm))
                continue
            span, margin = read_span(enc, w, st, en, first, last, self.max_answer, avoided[i])
            if span is None:  # every span of the focus touches an avoided answer
                out.append(WindowReading(None, NO_SPAN, NO_SPAN, null, norm))
                continue
            out.append(WindowReading(span, margin, margin + null[0] + null[1], null, norm))
        return out


NO_SPAN = -1e4  # the margin of a window that could not be read


def window_norm(enc, logits: np.ndarray, avoid: Sequence[tuple[int, int]] = ()) -> tuple[float, float]:
    """Log-sum-exp of a window's start and end logits over the positions a span or "no answer" may
    take: the first token and the window's own tokens (as in training, `rag.reader.train`), less
    those inside an `avoid` range (window characters)."""
    own = logits[enc.first : len(enc.ids) - 1]
    blocked = blocked_tokens(enc.offsets, enc.first, len(enc.ids) - 2, enc.first, avoid)
    if blocked is not None:
        own = own[~blocked]
    allowed = np.concatenate([logits[:1], own])
    m = allowed.max(axis=0)
    lse = m + np.log(np.exp(allowed - m).sum(axis=0))
    return float(lse[0]), float(lse[1])


def _token_range(enc, focus: tuple[int, int] | None) -> tuple[int, int]:
    """Absolute positions of the first and last window token inside `focus` (all window tokens
    without a focus)."""
    inside = [
        k for k, (s, e) in enumerate(enc.offsets)
        if s >= 0 and e > s and (focus is None or (e > focus[0] and s < focus[1]))
    ]
    if not inside:
        return 1, 0
    return enc.first + inside[0], enc.first + inside[-1]
