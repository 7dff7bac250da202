"""`rag train-reader`: fine-tune the top layers of multilingual-e5-small as an extractive reader
whose scores mean the same in every window, then fit the combiner and the abstention threshold.

1. **Data as the reader meets it** (`rag.reader.data`): every question is run through the real
   answer stage over the whole training corpus; the windows it would read are the question's
   training windows.
2. **Shared-norm training**: the start (and end) logits of all windows of a question and their
   "no answer" positions compete in one softmax. An answerable question's gold spans must win over
   every other position of every window and over "no answer"; an unanswerable one's "no answer"
   positions must win over every span. So the best-scored window is the answer, and a score means
   the same in every window. The frozen lower layers run once over every window (bf16 products, as
   at answer time) and their output is cached; the epochs run only the trainable top layers.
3. **Combiner** (`rag.answering.calibration`): the saved reader reads the calibration questions
   (training articles held out of step 2) exactly as at answer time; a logistic regression over
   the reader's log-probabilities and the retrieval and rule features is fitted to "the sentence
   holds the answer".
4. **Threshold**: on the dev split, the highest probability threshold at which at most
   `target_abstained` of the answerable news questions (and `target_abstained_xquad` of XQuAD-de)
   are abstained on; shipped in the manifest with the combiner and the dev figures (a
   risk–coverage table among them).

Deterministic for a given seed (the same weights hash). The result goes into `rag/reader/weights/`.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..answering.calibration import FEATURES
from ..config import Config
from .data import EVAL_DIR, NEWS_FILES, PlannedQuestion, QAExample, load_examples, plan_question, xquad_path
from .model import Encoded, build_network, cosine_schedule, encode_pair, pad_batch, token_span, trained_state
from .split import CALIBRATION_SHARE, DEV_SHARE, is_calibration, is_dev, split_hash

__all__ = [
    "TrainSettings", "WEIGHTS_DIR", "Prepared", "prepare", "run", "train_variants", "train_reader", "split", "make_items",
    "shared_norm_loss", "train",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FORMAT = 2


@dataclass(frozen=True)
class TrainSettings:
    langs: tuple[str, ...] = ("de", "en", "es")  # XQuAD languages besides the news questions (German)
    news_share: float = 1.0  # of the news training articles used (a learning curve takes less)
    dev_share: float = DEV_SHARE  # of the articles (news and XQuAD alike), held out
    calibration_share: float = CALIBRATION_SHARE  # of the training articles, held out for the combiner
    max_windows: int = 16  # per question: what the answer stage reads (Config.reader_top sentences)
    trainable_layers: int = 6  # 4 vs 6 measured (README, The reader); 6 fits the budget and 25 MB
    max_len: int = 256  # tokens of question + window
    max_question: int = 40
    max_answer_tokens: int = 30
    epochs: int = 1  # one pass over ~37k windows ≈ 50 min here
    questions_per_batch: int = 8
    lr: float = 1e-4
    head_lr: float = 1e-3
    warmup: float = 0.06
    seed: int = 0
    target_abstained: float = 0.03  # answerable news dev questions abstained on at the threshold, at most
    target_abstained_xquad: float = 0.01  # … and XQuAD-de dev questions
    measure_dense: bool = False  # also fit a combiner with the sentences' embedding similarity (measured, not shipped)
    limit: int | None = None  # for tests: the first N questions of each split, over their own articles only

    @property
    def abstention_targets(self) -> dict[str, float]:
        """Per dev source, the share of its answerable questions the threshold may abstain on."""
        return {"news": self.target_abstained, "xquad-de": self.target_abstained_xquad}


@dataclass
class WindowItem:
    question: int  # index of its question in the item list
    enc: Encoded
    starts: tuple[int, ...]  # gold start positions (token indices; (0,) = "no answer")
    ends: tuple[int, ...]
    states: object = field(default=None, repr=False)  # the frozen layers' output (fp16 tensor) …
    states_split: int = -1  # … below this layer


def data_hash(eval_dir: Path, langs: Sequence[str]) -> str:
    h = hashlib.sha256()
    files = [eval_dir / name for name in NEWS_FILES] + [eval_dir / "data" / "10kGNAD-test.csv"]
    files += [xquad_path(eval_dir, lang) for lang in langs]
    for p in files:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()[:16]


def split(examples: list[QAExample], s: TrainSettings) -> tuple[list[QAExample], list[QAExample], list[QAExample]]:
    """(train, calibration, dev) by article; `news_share` keeps that share of the news training articles."""
    dev = [e for e in examples if is_dev(e.group, s.dev_share)]
    rest = [e for e in examples if not is_dev(e.group, s.dev_share)]
    calib = [e for e in rest if is_calibration(e.group, s.calibration_share)]
    train = [
        e for e in rest if not is_calibration(e.group, s.calibration_share)
        and (e.source != "news" or split_hash(f"share:{e.group}") < s.news_share)
    ]
    # Dev figures and the threshold: the news questions and XQuAD in German (the goals' languages).
    dev = [e for e in dev if e.source in ("news", "xquad-de")]
    if s.limit:
        train, calib, dev = train[: s.limit], calib[: s.limit], dev[: s.limit]
    return train, calib, dev


def make_items(
    planned: Sequence[PlannedQuestion], tokenizer, s: TrainSettings, text_of: Callable[[str], str]
) -> tuple[list[int], list[list[WindowItem]]]:
    """Per question, its windows tokenised with their gold positions, and which of `planned` they
    are: a question whose answer was cut off by the length limit in every window is dropped."""
    out, kept = [], []
    for n, pq in enumerate(planned):
        items = []
        for w in pq.windows:
            window = text_of(w.doc_id)[w.start : w.end]
            enc = encode_pair(tokenizer, pq.example.question, window, s.max_question, s.max_len)
            spans = [t for t in (token_span(enc, window, g) for g in w.gold) if t is not None]
            if pq.example.answers:
                items.append(WindowItem(len(out), enc, tuple(sorted({a for a, _ in spans})), tuple(sorted({b for _, b in spans}))))
            else:
                items.append(WindowItem(len(out), enc, (0,), (0,)))
        if pq.example.answers and not any(it.starts for it in items):
            continue
        out.append(items)
        kept.append(n)
    return kept, out


def cache_states(net, windows: list[WindowItem], batch: int, progress: Callable[[int], None]) -> None:
    """The frozen layers' output for every window, with bf16 products as at answer time."""
    import torch

    order = sorted(range(len(windows)), key=lambda i: len(windows[i].enc.ids))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16()):
        for b in range(0, len(order), batch):
            part = order[b : b + batch]
            ids, mask = pad_batch([windows[i].enc.ids for i in part], 1)
            h = net.lower(torch.from_numpy(ids), torch.from_numpy(mask)).to(torch.float16)
            for row, i in enumerate(part):
                windows[i].states = h[row, : len(windows[i].enc.ids)].clone()
                windows[i].states_split = net.split
            progress(len(part))


def _bf16() -> bool:
    from .runtime import cpu_has_bf16

    return cpu_has_bf16()


def window_logits(net, windows: Sequence[WindowItem], sub_batch: int = 32) -> list:
    """Per window, its (start, end) logits over its positions, with everything but "no answer" and
    the window's own tokens masked out. Windows of like length share a forward pass."""
    import torch

    out: list = [None] * len(windows)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].enc.ids))
    for b in range(0, len(order), sub_batch):
        part = order[b : b + sub_batch]
        L = max(len(windows[i].enc.ids) for i in part)
        x = torch.zeros(len(part), L, windows[part[0]].states.shape[-1])
        mask = torch.zeros(len(part), L, dtype=torch.bool)
        for r, i in enumerate(part):
            n = len(windows[i].enc.ids)
            x[r, :n] = windows[i].states.float()
            mask[r, :n] = True
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_bf16()):
            logits = net.upper(x, mask)
        logits = logits.float()
        for r, i in enumerate(part):
            n, first = len(windows[i].enc.ids), windows[i].enc.first
            allowed = torch.zeros(n, dtype=torch.bool)
            allowed[0] = True
            allowed[first : n - 1] = True
            out[i] = logits[r, :n].masked_fill(~allowed[:, None], float("-inf"))
    return out


def shared_norm_loss(logits: Sequence, windows: Sequence[WindowItem]):
    """Mean over the questions of −log P(gold start) − log P(gold end), / 2, each probability a
    softmax over every allowed position of every window of the question (its "no answer" positions
    included). `logits[i]`: window i's (positions, 2) logits, −inf where not allowed."""
    import torch

    by_q: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_q.setdefault(w.question, []).append(i)
    losses = []
    for idx in by_q.values():
        total = []
        for col, gold_of in ((0, "starts"), (1, "ends")):
            every = torch.cat([logits[i][:, col] for i in idx])
            gold = torch.cat([logits[i][list(getattr(windows[i], gold_of)), col] for i in idx if getattr(windows[i], gold_of)])
            total.append(torch.logsumexp(every, 0) - torch.logsumexp(gold, 0))
        losses.append((total[0] + total[1]) / 2)
    return torch.stack(losses).mean()


def question_batches(questions: list[list[WindowItem]], size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(len(questions)))
    rng.shuffle(order)
    return [order[b : b + size] for b in range(0, len(order), size)]


def train(net, questions: list[list[WindowItem]], s: TrainSettings, progress: Callable[[int, float], None]) -> list[float]:
    """AdamW over the trainable layers and the head, cosine schedule with warm-up, shared-norm loss;
    returns the loss of every step."""
    import torch

    rng = random.Random(s.seed + 1)
    layer_params = [p for p in net.layers[net.split :].parameters()]
    opt = torch.optim.AdamW(
        [{"params": layer_params, "lr": s.lr}, {"params": list(net.head.parameters()), "lr": s.head_lr}], weight_decay=0.01
    )
    base = [g["lr"] for g in opt.param_groups]
    plan = [question_batches(questions, s.questions_per_batch, rng) for _ in range(s.epochs)]
    total = sum(len(p) for p in plan)
    warmup = max(1, int(s.warmup * total))
    step = 0
    losses: list[float] = []
    net.train()
    for epoch in plan:
        for part in epoch:
            f = cosine_schedule(step, total, warmup)
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * f
            windows = [w for q in part for w in questions[q]]
            loss = shared_norm_loss(window_logits(net, windows), windows)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(layer_params, 1.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            progress(len(windows), losses[-1])
    net.eval()
    return losses


def save(net, out_dir: Path, manifest: dict) -> None:
    import torch
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.to(torch.float16).contiguous() for k, v in trained_state(net).items()}
    tmp = out_dir / "reader.safetensors.tmp"
    save_file(state, str(tmp))
    tmp.replace(out_dir / "reader.safetensors")
    manifest["weights_sha256"] = hashlib.sha256((out_dir / "reader.safetensors").read_bytes()).hexdigest()
    write_manifest(out_dir, manifest)


def write_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out_dir / "manifest.json")


@dataclass
class Prepared:
    """The training material of one corpus and split: the questions' windows (tokenised, gold
    positions marked; the frozen layers' output is cached in them once computed) and the
    questions the combiner and the dev figures are read on."""

    index: object
    examples: list[QAExample]  # per training question, in the order of `questions`
    questions: list[list[WindowItem]]
    calibration: list[QAExample]
    dev: list[QAExample]
    answer_in_planned: float  # share of answerable training questions whose planned windows held the answer

    def subset(self, news_share: float) -> list[int]:
        """The training questions of `news_share` of the news articles (all XQuAD ones), by article."""
        return [
            i for i, ex in enumerate(self.examples) if ex.source != "news" or split_hash(f"share:{ex.group}") < news_share
        ]


def prepare(
    settings: TrainSettings, eval_dir: Path = EVAL_DIR, log=print, cache_dir: Path | None = None, plan: bool = True
) -> Prepared:
    """Build (or reuse) the training corpus's index, plan every training question's windows and
    tokenise them (without `plan`: only the index and the questions, for `recalibrate`).
    `settings.news_share` is applied later (`Prepared.subset`)."""
    from tqdm import tqdm

    from ..e5model import ensure_e5_model_dir
    from ..evaluation import build_eval_index
    from ..onnx_backend import shared_tokenizer

    tokenizer = shared_tokenizer(str(ensure_e5_model_dir() / "tokenizer.json"))
    examples, docs = load_examples(settings.langs, eval_dir)
    train_ex, calib_ex, dev_ex = split(examples, replace(settings, news_share=1.0))
    if settings.limit:
        wanted = {e.doc_id for e in train_ex + calib_ex + dev_ex}
        docs = [d for d in docs if d.id in wanted] + [d for d in docs if d.id not in wanted][: settings.limit]
    index = build_eval_index(docs, cache_dir, Config())
    log(f"Trainingskorpus: {len(index.documents)} Dokumente ({index.root})")
    if not plan:
        return Prepared(index, train_ex, [], calib_ex, dev_ex, 0.0)
    planned = []
    for ex in tqdm(train_ex, desc="Fenster planen", unit="Frage"):
        pq = plan_question(index, ex, settings.max_windows)
        if pq is not None:
            planned.append(pq)
    answerable = [pq for pq in planned if pq.example.answers]
    kept, questions = make_items(planned, tokenizer, settings, lambda d: index.documents[d].text)
    return Prepared(
        index, [planned[i].example for i in kept], questions, calib_ex, dev_ex,
        sum(pq.retrieved for pq in answerable) / max(1, len(answerable)),
    )


def run(
    settings: TrainSettings = TrainSettings(), out_dir: Path = WEIGHTS_DIR, eval_dir: Path = EVAL_DIR, log=print,
    cache_dir: Path | None = None,
) -> dict:
    """Train, fit the combiner and threshold, evaluate on the dev split and save. Returns the manifest."""
    started = time.perf_counter()
    prepared = prepare(settings, eval_dir, log, cache_dir)
    return train_reader(prepared, settings, Path(out_dir), eval_dir, log, started)


OFF_TOPIC_CALIBRATION = 300  # German XQuAD training questions asked against the news alone


def off_topic(examples: Sequence[QAExample]) -> list[QAExample]:
    """The questions as the corpus cannot answer them: asked against the news articles alone, their
    own (Wikipedia) article absent — what a question about another subject meets („Wer gewann die
    Fußball-WM 2014?“). The near-miss questions of news-qa-2 are all on the article's topic; these
    teach the combiner how a question without any matching article looks."""
    return [replace(e, answers=(), source="off-topic") for e in examples if e.source == "xquad-de"]


def calibrate(prepared: Prepared, settings: TrainSettings, out_dir: Path, manifest: dict) -> dict:
    """The saved reader at `out_dir`, read exactly as at answer time on the calibration and dev
    questions (and as many off-topic ones), fits the combiner and chooses the threshold; both and
    the dev figures go into `manifest` (written by the caller)."""
    from ..evaluation import build_eval_index
    from .calibrate import fit_combiner, read_questions
    from .runtime import NeuralReader

    reader = NeuralReader(out_dir)
    index = prepared.index
    calib = read_questions(index, reader, prepared.calibration, "Kalibrierung", dense=settings.measure_dense)
    dev = read_questions(index, reader, prepared.dev, "Dev", dense=settings.measure_dense)
    news = build_eval_index([index.documents[d] for d in index.documents if not d.startswith("xquad-")], None, Config())
    pool = off_topic(prepared.examples)
    pool = random.Random(settings.seed).sample(pool, min(OFF_TOPIC_CALIBRATION, len(pool)))
    calib += read_questions(news, reader, pool, "Fremde Fragen (Kalibrierung)", dense=settings.measure_dense)
    dev += read_questions(news, reader, off_topic(prepared.dev), "Fremde Fragen (Dev)", dense=settings.measure_dense)
    combiner, figures = fit_combiner(calib, dev, settings.abstention_targets)
    manifest["combiner"] = combiner.to_dict()
    manifest["calibration_questions"] = len(calib)
    manifest["dev"] = figures
    if settings.measure_dense:
        # Measured, not shipped: the same combiner with the sentences' embedding similarity as well
        # (an embedding per read sentence at answer time).
        with_dense, figures_dense = fit_combiner(calib, dev, settings.abstention_targets, FEATURES)
        manifest["alternatives"] = {"combiner_with_dense": with_dense.to_dict(), "dev_with_dense": figures_dense}
    return manifest


def recalibrate(out_dir: Path = WEIGHTS_DIR, eval_dir: Path = EVAL_DIR, log=print, cache_dir: Path | None = None) -> dict:
    """Refit the combiner and threshold of the reader at `out_dir` (its weights untouched), with the
    settings its manifest records."""
    started = time.perf_counter()
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
    settings = TrainSettings(**{**manifest["settings"], "langs": tuple(manifest["settings"]["langs"])})
    prepared = prepare(settings, eval_dir, log, cache_dir, plan=False)
    calibrate(prepared, settings, Path(out_dir), manifest)
    manifest["calibration_seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(Path(out_dir), manifest)
    log(json.dumps(manifest["dev"], ensure_ascii=False))
    return manifest


def train_variants(
    variants: Sequence[tuple[str, TrainSettings]], out_root: Path, eval_dir: Path = EVAL_DIR, log=print, cache_dir: Path | None = None,
) -> dict[str, dict]:
    """One reader per (name, settings) into `out_root/name`, on the data of the first variant's
    corpus settings (languages, windows); the frozen layers' output is computed once for all
    variants with the same number of trainable layers. A learning curve varies `news_share`.
    Returns name → manifest."""
    prepared = prepare(variants[0][1], eval_dir, log, cache_dir)
    out = {}
    for name, settings in variants:
        started = time.perf_counter()
        out[name] = train_reader(prepared, settings, Path(out_root) / name, eval_dir, log, started, keep_states=True)
    return out


def train_reader(
    prepared: Prepared, settings: TrainSettings, out_dir: Path, eval_dir: Path, log, started: float, keep_states: bool = False
) -> dict:
    """Train on `prepared` (its `settings.news_share` subset), save, then fit the combiner and the
    threshold with the saved reader and write the manifest."""
    import torch
    from tqdm import tqdm

    from ..e5model import ensure_e5_model_dir, source_sha256

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(settings.seed)
        chosen = prepared.subset(settings.news_share)
        questions = [prepared.questions[i] for i in chosen]
        windows = [w for q in questions for w in q]
        log(
            f"{len(questions)} Trainingsfragen ({len(windows)} Fenster, Antwort im Gelesenen: {prepared.answer_in_planned:.1%}), "
            f"{len(prepared.calibration)} Kalibrierfragen, {len(prepared.dev)} Dev-Fragen"
        )
        net, _ = build_network(ensure_e5_model_dir(), settings.trainable_layers)
        net.eval()
        missing = [w for w in windows if w.states is None or w.states_split != net.split]
        with tqdm(total=len(missing), desc="Untere Schichten", unit="Fenster") as bar:
            cache_states(net, missing, 64, bar.update)
        with tqdm(total=settings.epochs * len(windows), desc="Training", unit="Fenster") as bar:
            def progress(n: int, loss: float) -> None:
                bar.update(n)
                bar.set_postfix(loss=f"{loss:.3f}")

            losses = train(net, questions, settings, progress)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if not keep_states:
        for w in windows:
            w.states = None
    tenth = max(1, len(losses) // 10)
    manifest = {
        "format": FORMAT,
        "base_model": f"multilingual-e5-small@sha256:{source_sha256()[:16]}",
        "trainable_layers": settings.trainable_layers,
        "settings": asdict(settings),
        "training_data": data_hash(eval_dir, settings.langs),
        "train_questions": len(questions),
        "train_windows": len(windows),
        "answer_in_planned_windows": round(prepared.answer_in_planned, 4),
        # Mean loss over the first and the last tenth of the steps.
        "loss": {"first": round(float(np.mean(losses[:tenth])), 4), "last": round(float(np.mean(losses[-tenth:])), 4)},
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    save(net, out_dir, manifest)
    del net

    calibrate(prepared, settings, out_dir, manifest)
    manifest["seconds"] = round(time.perf_counter() - started, 1)
    write_manifest(out_dir, manifest)
    log(json.dumps(manifest["dev"], ensure_ascii=False))
    return manifest
