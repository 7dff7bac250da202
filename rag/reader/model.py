"""The reader network: multilingual-e5-small read as a cross-encoder (question and passage in one
input), its top layers fine-tuned, with a span head.

Input: ``<s> query: QUESTION </s></s> passage: WINDOW </s>`` (e5's own prompts, XLM-R's pair
template). A linear head gives every token a start and an end logit; the span is the best
start ≤ end pair inside the window, and the first token (``<s>``) stands for "no answer here"
(SQuAD 2.0 style), so `span score − null score` says how sure the reader is that the window
answers.

The lower layers are e5's own and stay frozen: training computes their output once and caches it
(`rag.reader.train`), and the package ships only the fine-tuned top layers and the head (fp16).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
BOS, EOS = 0, 2


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (question, window) pair and where the window's tokens are."""

    ids: list[int]
    first: int  # index of the window's first token
    offsets: list[tuple[int, int]]  # character span in the window of each window token


def encode_pair(tokenizer, question: str, window: str, max_question: int, max_len: int) -> Encoded:
    q = tokenizer.encode(QUERY_PROMPT + question, add_special_tokens=False).ids[:max_question]
    enc = tokenizer.encode(PASSAGE_PROMPT + window, add_special_tokens=False)
    shift = len(PASSAGE_PROMPT)
    room = max_len - len(q) - 4
    ids, offsets = [], []
    for tid, (s, e) in zip(enc.ids, enc.offsets):
        if len(ids) >= room:
            break
        ids.append(tid)
        # The prompt's tokens stay in the input but can never be part of a span.
        offsets.append((max(0, s - shift), max(0, e - shift)) if e > shift else (-1, -1))
    first = len(q) + 3
    return Encoded([BOS, *q, EOS, EOS, *ids, EOS], first, offsets)


def token_span(enc: Encoded, window: str, span: tuple[int, int]) -> tuple[int, int] | None:
    """The tokens (absolute positions) that cover the character span, or None if it was cut off."""
    start = end = None
    for i, (s, e) in enumerate(enc.offsets):
        if s < 0:
            continue
        if start is None and e > span[0]:
            start = i
        if s < span[1]:
            end = i
    if start is None or end is None or end < start or enc.offsets[end][1] < span[1]:
        return None
    return enc.first + start, enc.first + end


def char_span(enc: Encoded, window: str, start: int, end: int) -> tuple[int, int]:
    """Characters of window tokens start..end (absolute positions), without surrounding spaces."""
    s = enc.offsets[start - enc.first][0]
    e = enc.offsets[end - enc.first][1]
    while s < e and window[s].isspace():
        s += 1
    return s, e


def best_span(
    start_logits: np.ndarray, end_logits: np.ndarray, first: int, last: int, max_tokens: int, blocked: np.ndarray | None = None
) -> tuple[int, int, float]:
    """The pair start ≤ end < start + max_tokens inside [first, last] with the highest start + end
    logit; `blocked` (one flag per token first..last) marks tokens no span may contain. Score
    -inf when every span is blocked."""
    s = start_logits[first : last + 1]
    e = end_logits[first : last + 1]
    n = len(s)
    scores = s[:, None] + e[None, :]
    # Only spans that run forwards and are at most max_tokens long.
    i, j = np.indices((n, n))
    ok = (j >= i) & (j < i + max_tokens)
    if blocked is not None and blocked.any():
        # A span i..j holds a blocked token when the count of blocked tokens up to j exceeds that before i.
        upto = np.concatenate([[0], np.cumsum(blocked)])
        ok &= upto[j + 1] == upto[i]
    scores = np.where(ok, scores, -np.inf)
    flat = int(np.argmax(scores))
    a, b = divmod(flat, n)
    return first + a, first + b, float(scores[a, b])


def blocked_tokens(
    offsets: Sequence[tuple[int, int]], first: int, last: int, shift: int, avoid: Sequence[tuple[int, int]]
) -> np.ndarray | None:
    """Per token first..last: whether its characters overlap one of the `avoid` ranges; `offsets`
    are the tokens' characters, the token at position p being offsets[p - shift]. None: nothing avoided."""
    if not avoid:
        return None
    out = np.zeros(max(0, last - first + 1), dtype=bool)
    for k in range(len(out)):
        s, e = offsets[first + k - shift]
        out[k] = e > s and any(s < b and a < e for a, b in avoid)
    return out


def read_span(
    enc: Encoded, window: str, start_logits: np.ndarray, end_logits: np.ndarray, first: int, last: int, max_tokens: int,
    avoid: Sequence[tuple[int, int]] = (),
) -> tuple[tuple[int, int] | None, float]:
    """The best span among tokens first..last as characters of the window, and its margin: its
    score minus the "no answer" score at the first token. Spans overlapping an `avoid` range (window
    characters) are never taken; (None, -inf) when nothing else is left."""
    blocked = blocked_tokens(enc.offsets, first, last, enc.first, avoid)
    a, z, score = best_span(start_logits, end_logits, first, last, max_tokens, blocked)
    if not math.isfinite(score):
        return None, score
    return char_span(enc, window, a, z), score - float(start_logits[0] + end_logits[0])


# ---------------------------------------------------------------- torch network


def e5_state_dict(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return {k.removeprefix("bert."): v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}


def build_network(model_dir: Path, trainable_layers: int):
    """The torch reader: e5's embeddings and layers, a span head on top. Returns (net, config)."""
    import torch
    from torch import nn

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    H, nh, NL = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps = float(cfg.get("layer_norm_eps", 1e-12))

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(H, 3 * H)
            self.ao = nn.Linear(H, H)
            self.ln1 = nn.LayerNorm(H, eps=eps)
            self.fi = nn.Linear(H, cfg["intermediate_size"])
            self.fo = nn.Linear(cfg["intermediate_size"], H)
            self.ln2 = nn.LayerNorm(H, eps=eps)
            self.drop = nn.Dropout(0.1)

        def forward(self, x, mask):
            B, L, _ = x.shape
            qkv = self.qkv(x).view(B, L, 3, nh, H // nh).permute(2, 0, 3, 1, 4)
            ctx = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask[:, None, None, :])
            ctx = ctx.transpose(1, 2).reshape(B, L, H)
            x = self.ln1(x + self.drop(self.ao(ctx)))
            return self.ln2(x + self.drop(self.fo(nn.functional.gelu(self.fi(x)))))

    sd = e5_state_dict(model_dir)

    class ReaderNet(nn.Module):
        def __init__(self):
            super().__init__()
            # Built from the e5 tables directly: a random init of 250k × 384 first costs seconds and memory.
            self.word = nn.Embedding.from_pretrained(sd["embeddings.word_embeddings.weight"], freeze=True)
            self.pos = nn.Embedding.from_pretrained(sd["embeddings.position_embeddings.weight"], freeze=True)
            self.tok_type = nn.Parameter(torch.zeros(H))
            self.ln = nn.LayerNorm(H, eps=eps)
            self.layers = nn.ModuleList(Layer() for _ in range(NL))
            self.head = nn.Linear(H, 2)
            self.split = NL - trainable_layers  # layers below this index are frozen

        def lower(self, ids, mask):
            """Output of the frozen part (embeddings and the lower layers)."""
            L = ids.shape[1]
            x = self.ln(self.word(ids) + self.pos.weight[:L] + self.tok_type)
            for layer in self.layers[: self.split]:
                x = layer(x, mask)
            return x

        def upper(self, x, mask):
            """Start and end logits (B, L, 2) from the frozen part's output."""
            for layer in self.layers[self.split :]:
                x = layer(x, mask)
            return self.head(x)

        def forward(self, ids, mask):
            return self.upper(self.lower(ids, mask), mask)

    net = ReaderNet()
    with torch.no_grad():
        net.tok_type.copy_(sd["embeddings.token_type_embeddings.weight"][0])
        net.ln.weight.copy_(sd["embeddings.LayerNorm.weight"])
        net.ln.bias.copy_(sd["embeddings.LayerNorm.bias"])
        for i, layer in enumerate(net.layers):
            p = f"encoder.layer.{i}."
            names = ("query", "key", "value")
            layer.qkv.weight.copy_(torch.cat([sd[p + f"attention.self.{n}.weight"] for n in names]))
            layer.qkv.bias.copy_(torch.cat([sd[p + f"attention.self.{n}.bias"] for n in names]))
            for mod, name in ((layer.ao, "attention.output.dense"), (layer.fi, "intermediate.dense"), (layer.fo, "output.dense"),
                              (layer.ln1, "attention.output.LayerNorm"), (layer.ln2, "output.LayerNorm")):
                mod.weight.copy_(sd[p + name + ".weight"])
                mod.bias.copy_(sd[p + name + ".bias"])
        # Small start: the head begins by saying little, so early steps don't wreck the layers below.
        nn.init.normal_(net.head.weight, std=0.02)
        nn.init.zeros_(net.head.bias)
    for p in net.parameters():
        p.requires_grad_(False)
    for p in [*net.layers[net.split :].parameters(), *net.head.parameters()]:
        p.requires_grad_(True)
    return net, cfg


def trained_state(net) -> dict:
    """The parameters that training changed: the top layers and the head."""
    return {k: v for k, v in net.state_dict().items() if k.startswith("head.") or _layer_no(k) >= net.split}


def _layer_no(key: str) -> int:
    return int(key.split(".")[1]) if key.startswith("layers.") else -1


def cosine_schedule(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    L = max(len(s) for s in seqs)
    ids = np.full((len(seqs), L), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), L), dtype=bool)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = True
    return ids, mask
