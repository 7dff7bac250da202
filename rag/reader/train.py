"""`rag train-reader`: fine-tune the top layers of multilingual-e5-small as an extractive reader.

Plan, chosen for a 2-core CPU: the frozen lower layers run once over every training window and
their output is cached (fp16, in memory); the epochs then run only the trainable top layers and
the head. Deterministic for a given seed. The result goes into `rag/reader/weights/`: the trained
tensors (fp16 safetensors) and `manifest.json` (data hash, settings, dev figures).
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data import DEV_SHARE, EVAL_DIR, QAExample, Window, is_dev, load_examples, windows_for, xquad_path
from .model import Encoded, build_network, cosine_schedule, encode_pair, pad_batch, read_span, token_span, trained_state

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = 1


@dataclass(frozen=True)
class TrainSettings:
    langs: tuple[str, ...] = ("de", "en", "es")  # XQuAD languages besides news-qa (German)
    dev_share: float = DEV_SHARE  # of the articles (news and XQuAD alike), held out
    negatives: int = 2  # windows without the answer per question
    trainable_layers: int = 2
    max_len: int = 192  # tokens of question + window
    max_question: int = 40
    max_answer_tokens: int = 30
    epochs: int = 2
    batch: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    warmup: float = 0.06
    seed: int = 0
    limit: int | None = None  # questions (for tests): the first N of each split


@dataclass
class Item:
    window: Window
    enc: Encoded
    target: tuple[int, int]  # token positions; (0, 0) = no answer in this window
    states: object = field(default=None, repr=False)  # the frozen layers' output (fp16 tensor)


def data_hash(eval_dir: Path, langs: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    files = [eval_dir / "news-qa.jsonl", eval_dir / "data" / "10kGNAD-test.csv"]
    files += [xquad_path(eval_dir, lang) for lang in langs]
    for p in files:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:16]


def split(examples: list[QAExample], s: TrainSettings) -> tuple[list[QAExample], list[QAExample]]:
    train = [e for e in examples if not is_dev(e.group, s.dev_share)]
    dev = [e for e in examples if is_dev(e.group, s.dev_share)]
    if s.limit:
        train, dev = train[: s.limit], dev[: s.limit]
    return train, dev


def make_items(examples: list[QAExample], tokenizer, s: TrainSettings, rng: random.Random) -> list[Item]:
    items = []
    for ex in examples:
        for w in windows_for(ex, rng, s.negatives):
            enc = encode_pair(tokenizer, w.question, w.text, s.max_question, s.max_len)
            target = (0, 0)
            if w.answer is not None:
                target = token_span(enc, w.text, w.answer)
                if target is None:
                    continue  # the answer was cut off by the length limit
            items.append(Item(w, enc, target))
    return items


def cache_states(net, items: list[Item], batch: int, progress: Callable[[int], None]) -> None:
    import torch

    order = sorted(range(len(items)), key=lambda i: len(items[i].enc.ids))
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            part = order[b : b + batch]
            ids, mask = pad_batch([items[i].enc.ids for i in part], 1)
            h = net.lower(torch.from_numpy(ids), torch.from_numpy(mask)).to(torch.float16)
            for row, i in enumerate(part):
                items[i].states = h[row, : len(items[i].enc.ids)].clone()
            progress(len(part))


def batches(items: list[Item], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of windows of like length (little padding), in random order."""
    idx = list(range(len(items)))
    rng.shuffle(idx)
    out = []
    for g in range(0, len(idx), size * 50):
        group = sorted(idx[g : g + size * 50], key=lambda i: len(items[i].enc.ids))
        out += [group[b : b + size] for b in range(0, len(group), size)]
    rng.shuffle(out)
    return out


def _stack(items: list[Item], part: list[int]):
    import torch

    L = max(len(items[i].enc.ids) for i in part)
    x = torch.zeros(len(part), L, items[part[0]].states.shape[-1])
    mask = torch.zeros(len(part), L, dtype=torch.bool)
    allowed = torch.zeros(len(part), L, dtype=torch.bool)
    for r, i in enumerate(part):
        n = len(items[i].enc.ids)
        x[r, :n] = items[i].states.float()
        mask[r, :n] = True
        allowed[r, 0] = True  # the "no answer" position
        allowed[r, items[i].enc.first : n - 1] = True
    return x, mask, allowed


def logits_for(net, items: list[Item], part: list[int]):
    x, mask, allowed = _stack(items, part)
    out = net.upper(x, mask)
    out = out.masked_fill(~allowed[..., None], -1e4)
    return out[..., 0], out[..., 1]


def train(net, items: list[Item], s: TrainSettings, progress: Callable[[int, float], None]) -> list[float]:
    """AdamW over the trainable layers and the head, cosine schedule with warm-up; returns the
    loss of every step."""
    import torch

    rng = random.Random(s.seed + 1)
    layer_params = [p for p in net.layers[net.split :].parameters()]
    opt = torch.optim.AdamW(
        [{"params": layer_params, "lr": s.lr}, {"params": list(net.head.parameters()), "lr": s.head_lr}], weight_decay=0.01
    )
    base = [g["lr"] for g in opt.param_groups]
    plan = [batches(items, s.batch, rng) for _ in range(s.epochs)]
    total = sum(len(p) for p in plan)
    warmup = max(1, int(s.warmup * total))
    step = 0
    losses: list[float] = []
    net.train()
    ce = torch.nn.functional.cross_entropy
    for epoch in plan:
        for part in epoch:
            f = cosine_schedule(step, total, warmup)
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * f
            start, end = logits_for(net, items, part)
            ts = torch.tensor([items[i].target[0] for i in part])
            te = torch.tensor([items[i].target[1] for i in part])
            loss = (ce(start, ts) + ce(end, te)) / 2
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layer_params, 1.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            progress(len(part), losses[-1])
    net.eval()
    return losses


def predict(net, items: list[Item], s: TrainSettings) -> list[tuple[tuple[int, int] | None, float]]:
    """Per window: the best span (characters in the window) and its score minus the null score."""
    import torch

    out: list = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(items[i].enc.ids))
    with torch.inference_mode():
        for b in range(0, len(order), 64):
            part = order[b : b + 64]
            start, end = logits_for(net, items, part)
            for r, i in enumerate(part):
                it = items[i]
                st, en = start[r].numpy(), end[r].numpy()
                out[i] = read_span(it.enc, it.window.text, st, en, it.enc.first, len(it.enc.ids) - 2, s.max_answer_tokens)
    return out


def dev_figures(items: list[Item], preds, threshold: float = 0.0) -> dict:
    """Per question, the best window's span against the gold span: exact match and token F1
    (`rag.evaluation`'s normalisation), the share of answerable questions whose best window holds
    the answer, and abstention at `threshold` (best margin below it = no answer)."""
    from ..evaluation import span_f1_em

    by_q: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_q[it.window.qid].append(i)
    em = f1 = found = answerable = unans = abstained_right = abstained_wrong = 0
    for idx in by_q.values():
        best = max(idx, key=lambda i: preds[i][1])
        span, margin = preds[best]
        gold = [items[i] for i in idx if items[i].window.answer is not None]
        if not gold:
            unans += 1
            abstained_right += margin < threshold
            continue
        answerable += 1
        abstained_wrong += margin < threshold
        g = gold[0].window
        truth = g.text[g.answer[0] : g.answer[1]]
        w = items[best].window
        e, f = span_f1_em(w.text[span[0] : span[1]], [truth])
        em += e
        f1 += f
        found += items[best].window.answer is not None
    return {
        "questions": answerable + unans,
        "exact_match": round(em / max(1, answerable), 4),
        "f1": round(f1 / max(1, answerable), 4),
        "best_window_holds_answer": round(found / max(1, answerable), 4),
        "unanswerable": unans,
        "abstained_unanswerable": round(abstained_right / max(1, unans), 4),
        "abstained_answerable": round(abstained_wrong / max(1, answerable), 4),
    }


def save(net, out_dir: Path, manifest: dict) -> None:
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(torch.float16).contiguous() for k, v in trained_state(net).items()}
    tmp = out_dir / "reader.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(out_dir / "reader.safetensors")
    manifest["weights_sha256"] = hashlib.sha256((out_dir / "reader.safetensors").read_bytes()).hexdigest()
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def run(settings: TrainSettings = TrainSettings(), out_dir: Path = WEIGHTS_DIR, eval_dir: Path = EVAL_DIR, log=print) -> dict:
    """Train, evaluate on the dev split and save. Returns the manifest."""
    import torch

    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _run(settings, out_dir, eval_dir, log, started)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _run(settings: TrainSettings, out_dir: Path, eval_dir: Path, log, started: float) -> dict:
    from tokenizers import Tokenizer
    from tqdm import tqdm

    from ..e5model import ensure_e5_model_dir, source_sha256

    rng = random.Random(settings.seed)
    model_dir = ensure_e5_model_dir()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    train_ex, dev_ex = split(load_examples(settings.langs, eval_dir), settings)
    train_items = make_items(train_ex, tokenizer, settings, rng)
    dev_items = make_items(dev_ex, tokenizer, settings, rng)
    log(f"{len(train_ex)} Trainingsfragen ({len(train_items)} Fenster), {len(dev_ex)} Dev-Fragen ({len(dev_items)} Fenster)")
    net, _ = build_network(model_dir, settings.trainable_layers)
    net.eval()
    with tqdm(total=len(train_items) + len(dev_items), desc="Untere Schichten", unit="Fenster") as bar:
        cache_states(net, train_items + dev_items, 64, bar.update)
    with tqdm(total=settings.epochs * len(train_items), desc="Training", unit="Fenster") as bar:
        def progress(n: int, loss: float) -> None:
            bar.update(n)
            bar.set_postfix(loss=f"{loss:.3f}")

        losses = train(net, train_items, settings, progress)
    tenth = max(1, len(losses) // 10)
    figures = dev_figures(dev_items, predict(net, dev_items, settings))
    news = [it for it in dev_items if it.window.qid.startswith("gnad")]
    figures_news = dev_figures(news, predict(net, news, settings))
    manifest = {
        "format": FORMAT,
        "base_model": f"multilingual-e5-small@sha256:{source_sha256()[:16]}",
        "trainable_layers": settings.trainable_layers,
        "settings": asdict(settings),
        "training_data": data_hash(eval_dir, settings.langs),
        "train_questions": len(train_ex),
        "train_windows": len(train_items),
        "dev": {"all": figures, "news": figures_news},
        # Mean loss over the first and the last tenth of the steps.
        "loss": {"first": round(float(np.mean(losses[:tenth])), 4), "last": round(float(np.mean(losses[-tenth:])), 4)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    save(net, out_dir, manifest)
    log(json.dumps(manifest["dev"], ensure_ascii=False))
    return manifest
