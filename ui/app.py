"""The web UI (Gradio 6): ask questions with quoted answers, read whole articles, manage the corpus.

    from ui.app import create_app, serve
    serve("corpus", "index")                       # what `rag serve` runs

The answer function is also a named API endpoint (`/answer`, see `answer` in `create_app`).

Concurrency: questions are answered from the index version held by the shared `rag.service.RagService`
(here `UIService`); a rebuild builds a new version next to it and swaps the reference under a lock,
so questions asked during a rebuild are answered from the previous version. Rebuilds, uploads and
removals are serialised.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from rag import api as rag_api  # noqa: E402
from rag.config import Config  # noqa: E402
from rag.errors import CorpusError, QuestionError, RagError  # noqa: E402
from rag.progress import Progress, progress_bar  # noqa: E402
from rag.service import RagService  # noqa: E402

from . import render  # noqa: E402
from .files import ALLOWED_SUFFIXES, MAX_UPLOAD_BYTES, UploadError, remove_article, save_upload  # noqa: E402

log = logging.getLogger(__name__)

MODE_CHOICES = [("Hybrid (empfohlen)", "hybrid"), ("Bedeutung (dense)", "dense"), ("Stichwörter (BM25)", "bm25")]
K_MIN, K_MAX = 1, 5
MAX_TURNS = 50
EXAMPLES = [
    "Wie lange dauerte der Gipfel?",
    "Wo hielt sich Putin während der Videokonferenz auf?",
    "Wer ist der Nationale Sicherheitsberater von Biden?",
    "Wie viele Menschen sind im Konflikt in der Ostukraine bisher gestorben?",
    "Welche Pipeline steht für Deutschland im Konflikt auf dem Spiel?",
]


# ---------------------------------------------------------------- the service behind the UI


class LockedEmbedder:
    """Serialises calls into the embedding model: a rebuild and questions share one model, and
    tokenizers/torch modules are not guaranteed to be safe for concurrent calls."""

    def __init__(self, inner):
        self._inner = inner
        self._lock = threading.RLock()

    def embed_passages(self, texts, progress=None, isolated=False):
        with self._lock:
            return self._inner.embed_passages(texts, progress, isolated=isolated)

    def embed_queries(self, texts):
        with self._lock:
            return self._inner.embed_queries(texts)

    def __getattr__(self, name):  # name, dim, fingerprint, …
        return getattr(self._inner, name)


def _load_embedder(config: Config):
    from rag.embedding import load_embedder

    return load_embedder(config)


class UIService(RagService):
    """The shared RagService (rag.service) with what the UI adds: one embedding model for questions
    and rebuilds, the article viewer, uploads and removals, and the UI's limit on quotes. A damaged
    index is rebuilt on start; rag.answer in this process answers from this service too."""

    def __init__(self, index_path, corpus_path, config: Config | None = None, embedder=None, progress: Progress | None = None):
        config = config or Config()
        if embedder is None:
            embedder = _load_embedder(config)
        if not isinstance(embedder, LockedEmbedder):
            embedder = LockedEmbedder(embedder)
        super().__init__(index_path, corpus_path, config, embedder, repair=True, lock_timeout=600)
        if not self.corpus_path.is_dir():
            raise CorpusError(f"Korpusordner nicht gefunden: {self.corpus_path}")
        self.open(progress)
        rag_api.register(self)

    # -- questions
    def answer_with_hashes(self, question: str, k: int = 3, mode: str | None = None, filters=None, history=()):
        """(Answer, content hashes of the quoted articles) from the current index version."""
        return super().answer_with_hashes(question, _check_k(k), mode, filters, history)

    def article_html(self, payload: Any) -> str:
        """The article viewer for a quote card's payload; only indexed articles are served."""
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except (ValueError, RecursionError):  # not JSON, or nested too deeply
                payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("doc"), str):
            return render.render_viewer_empty("Ungültige Anfrage.")
        idx = self.index
        doc = idx.documents.get(payload["doc"])
        if doc is None:
            return render.render_viewer_empty(f"Der Artikel „{payload['doc']}“ ist nicht (mehr) im Index.")

        def span(value):
            try:
                a, b = int(value[0]), int(value[1])
            except (TypeError, ValueError, IndexError, KeyError, OverflowError):  # OverflowError: 1e999 → inf
                return None
            return (a, b) if 0 <= a < b <= len(doc.text) else None

        quote = span([payload.get("start"), payload.get("end")])
        hl = span(payload.get("hl") or [])
        note = None
        if payload.get("hash") and payload["hash"] != doc.content_hash:
            quote = hl = None
            note = "Der Artikel wurde seit dieser Antwort geändert; die zitierte Stelle kann nicht mehr markiert werden."
        return render.render_article(doc, quote, hl, note)

    # -- corpus administration (serialised with rebuilds)
    def upload(self, files: list[tuple[str, str]], overwrite: bool = False, progress: Progress | None = None):
        """Save (path, original name) uploads into the corpus and rebuild when any was saved.

        → (saved results, error lines, Index or None)."""
        errors: list[str] = []

        def change():
            saved = []
            existing = self.index.documents
            for path, name in files:
                try:
                    saved.append(save_upload(path, self.corpus_path, name=name, overwrite=overwrite, existing=existing))
                except UploadError as e:
                    errors.append(str(e))
            return saved

        if progress and self.build_lock.locked():
            progress(0.0, "Warte auf laufenden Aufbau …")
        with self.build_lock:  # check first, rebuild only when something changed
            saved = change()
        if not any(not r.unchanged for r in saved):
            return saved, errors, None
        return saved, errors, self.rebuild(progress)

    def remove(self, doc_id: str, progress: Progress | None = None):
        """Remove an article's file from the corpus and rebuild. → (Index, message)."""
        removed = []

        def change():
            doc = self.index.documents.get(doc_id)
            if doc is None:
                raise CorpusError(f"Artikel {doc_id} ist nicht im Index.")
            removed.append(remove_article(doc, self.corpus_path))

        idx = self.rebuild(progress, change)
        return idx, removed[0]

    def chunk_counts(self, idx=None) -> dict[str, int]:
        idx = idx or self.index
        return idx.documents.chunk_counts()


def _check_k(k) -> int:
    try:
        k = int(k if k is not None else 3)
    except (TypeError, ValueError):
        raise QuestionError(f"Ungültige Anzahl Zitate: {k}") from None
    if not K_MIN <= k <= K_MAX:
        raise QuestionError(f"Die Anzahl Zitate muss zwischen {K_MIN} und {K_MAX} liegen (war {k}).")
    return k


# ---------------------------------------------------------------- chat session (per browser tab)

_chat_lock = threading.Lock()


def new_chat() -> dict:
    # turns: id, question, history (the topic's earlier questions), k, mode, status (pending|running|done), html;
    # topic: the questions asked since the chat or its current topic began (the history of the next question).
    return {"turns": [], "topic": []}


def _log_html(chat: dict) -> str:
    parts = []
    for t in chat["turns"]:
        if t.get("new_topic"):
            parts.append(render.render_topic_break())
        parts.append(t["html"])
    if chat.get("break") and chat["turns"]:
        parts.append(render.render_topic_break())  # „Neues Thema“ pressed: the divider shows at once
    return render.render_log(parts)


# ---------------------------------------------------------------- the page

CSS = """
.gradio-container { max-width: 1400px !important; }
#rag-header { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: .25rem 1rem;
  border-bottom: 3px solid #1f3a5f; padding: .25rem 0 .5rem; margin-bottom: .25rem; }
#rag-header h1 { font-size: 1.5rem; margin: 0; color: #1f3a5f; letter-spacing: -.01em; }
#rag-header .rag-sub { color: #555; font-size: .95rem; }
#rag-header .rag-state { font-size: .85rem; color: #444; background: #eef2f7; border-radius: 999px; padding: .15rem .7rem; }
.rag-label { font-size: .72rem; font-weight: 700; letter-spacing: .06em; text-transform: uppercase; color: #1f3a5f; margin-right: .35rem; }
.rag-log { position: relative; max-height: 64vh; overflow-y: auto; padding: .25rem .25rem .5rem 0; }
.rag-log.rag-empty { color: #555; border: 1px dashed #c5ccd6; border-radius: 10px; padding: 1rem 1.25rem; font-size: 1rem; }
.rag-turn { border-bottom: 1px solid #e3e7ed; padding: .75rem 0 1rem; }
.rag-turn:last-child { border-bottom: none; }
.rag-q { font-size: 1.08rem; font-weight: 600; margin-bottom: .5rem; overflow-wrap: anywhere; }
.rag-phrase { font-size: 1.15rem; margin: .25rem 0 .4rem; overflow-wrap: anywhere; }
.rag-phrase mark { font-weight: 700; }
mark { background: #ffe066; color: #111; padding: 0 .12em; border-radius: 3px; }
.rag-quote mark { background: #fff3bf; }
.rag-quote mark .rag-ans { background: #ffd43b; font-weight: 700; border-radius: 3px; }
.rag-agreement { font-size: .95rem; padding: .35rem .6rem; border-radius: 6px; margin: .25rem 0 .5rem; overflow-wrap: anywhere; }
.rag-agree { background: #e6f4ea; color: #1e5631; }
.rag-disagree { background: #fff4e5; color: #7a4a00; }
.rag-quotes-head { display: block; margin-top: .6rem; }
ol.rag-cards { list-style: none; padding: 0; margin: .35rem 0 0; }
.rag-card { position: relative; border: 1px solid #d9dee6; border-left: 4px solid #1f3a5f; border-radius: 8px;
  padding: .6rem .8rem .6rem 2.4rem; margin: 0 0 .6rem; background: #fff; }
.rag-card.rag-active { box-shadow: 0 0 0 2px #ffd43b; }
.rag-card-num { position: absolute; left: .6rem; top: .6rem; width: 1.3rem; height: 1.3rem; border-radius: 50%;
  background: #1f3a5f; color: #fff; font-size: .75rem; font-weight: 700; display: flex; align-items: center; justify-content: center;
  font-family: system-ui, sans-serif; line-height: 1; }
#rag-log blockquote.rag-quote { margin: 0 0 .45rem !important; padding: 0 !important; border: none !important;
  font-family: Georgia, 'Times New Roman', serif; font-size: 1.02rem;
  line-height: 1.5; white-space: pre-line; overflow-wrap: anywhere; color: #222; }
.rag-meta { display: flex; flex-wrap: wrap; gap: .15rem .9rem; font-size: .82rem; color: #555; overflow-wrap: anywhere; }
.rag-meta .rag-title { font-weight: 600; color: #222; flex-basis: 100%; }
.rag-meta code, .rag-table code { font-size: .78rem; background: #f1f3f6; padding: 0 .25em; border-radius: 3px; word-break: break-all; }
button.rag-open { margin-top: .5rem; font-size: .85rem; padding: .25rem .7rem; border-radius: 6px; border: 1px solid #1f3a5f;
  background: #fff; color: #1f3a5f; cursor: pointer; }
#rag-log button.rag-open:hover, #rag-log button.rag-open:focus-visible { background: #1f3a5f !important; color: #fff !important; }
.rag-abstain { display: flex; gap: .7rem; align-items: flex-start; background: #f4f5f7; border-left: 4px solid #8a94a6;
  border-radius: 8px; padding: .7rem .9rem; color: #333; }
.rag-abstain-icon { font-size: 1.3rem; line-height: 1; color: #8a94a6; }
.rag-error { background: #fdecea; color: #8a1c12; border-radius: 8px; padding: .6rem .9rem; }
.rag-pending { color: #555; font-style: italic; }
.rag-context { font-size: .9rem; color: #444; margin: 0 0 .35rem; overflow-wrap: anywhere; }
.rag-topic-break { display: flex; align-items: center; gap: .6rem; color: #1f3a5f; font-size: .75rem; font-weight: 700;
  letter-spacing: .06em; text-transform: uppercase; margin: .4rem 0; }
.rag-topic-break::before, .rag-topic-break::after { content: ''; flex: 1; border-top: 1px dashed #8a94a6; }
.rag-dots::after { content: '●'; animation: rag-blink 1s infinite; margin-right: .3rem; color: #1f3a5f; }
@keyframes rag-blink { 50% { opacity: .2; } }
.rag-article header h3 { margin: 0 0 .3rem; font-size: 1.15rem; line-height: 1.3; }
.rag-article-body { position: relative; white-space: pre-line; font-family: Georgia, 'Times New Roman', serif; font-size: 1rem;
  line-height: 1.6; max-height: 68vh; overflow-y: auto; border-top: 1px solid #e3e7ed; margin-top: .5rem; padding: .5rem .25rem 0 0;
  overflow-wrap: anywhere; }
.rag-inquote { background: #fff8d6; box-shadow: 0 0 0 2px #fff8d6; border-radius: 2px; }
.rag-note { background: #fff4e5; color: #7a4a00; padding: .35rem .6rem; border-radius: 6px; margin-top: .4rem; font-size: .9rem; }
.rag-viewer-empty { color: #666; border: 1px dashed #c5ccd6; border-radius: 10px; padding: 1rem 1.25rem; }
#rag-viewer { border: 1px solid #d9dee6; border-radius: 10px; padding: .75rem 1rem; background: #fcfcfd; }
.rag-table-wrap { max-height: 60vh; overflow: auto; }
#rag-corpus table.rag-table { width: 100%; border-collapse: collapse; font-size: .9rem; border: none; margin: 0; }
#rag-corpus .rag-table th { text-align: left; position: sticky; top: 0; background: #eef2f7; padding: .4rem .5rem; border: none; }
#rag-corpus .rag-table td { border: none; border-top: 1px solid #e3e7ed; padding: .4rem .5rem; vertical-align: top; }
#rag-corpus .rag-table tr { border: none; }
#rag-corpus .rag-table .rag-col-title { font-weight: 600; }
#rag-corpus .rag-table td:last-child { white-space: nowrap; }
.rag-status-idle { background: #f4f5f7; color: #444; }
.rag-table .rag-num { text-align: right; }
.rag-status { border-radius: 8px; padding: .6rem .9rem; overflow-wrap: anywhere; }
.rag-status-ok { background: #e6f4ea; color: #1e5631; }
.rag-status-err { background: #fdecea; color: #8a1c12; }
.rag-status ul { margin: .3rem 0 0 1.1rem; }
#rag-examples { gap: .4rem !important; }
#rag-examples button { flex: 0 1 auto !important; min-width: 0 !important; white-space: normal; text-align: left; }
@media (max-width: 700px) {
  .rag-card { padding: .6rem .7rem; }
  .rag-card-num { position: static; display: inline-flex; vertical-align: .15em; margin-right: .4rem; font-family: system-ui, sans-serif; }
  #rag-corpus .rag-table thead { display: none; }
  #rag-corpus .rag-table tr { display: block; border-top: 1px solid #e3e7ed; padding: .35rem 0; }
  #rag-corpus .rag-table td { display: inline-block; border: none; padding: 0 .8rem 0 0; white-space: nowrap; }
  #rag-corpus .rag-table-wrap { max-height: none; }
  #rag-corpus .rag-table td.rag-col-title { display: block; white-space: normal; }
  #rag-corpus .rag-table td.rag-num::after { content: ' Abschnitte'; }
  .rag-log { max-height: none; }
  .rag-article-body { max-height: 80vh; }
  #rag-header h1 { font-size: 1.25rem; }
}
"""

LOG_JS = """
let seen = '';
element.addEventListener('click', (e) => {
  const b = e.target.closest('button.rag-open');
  if (!b || !element.contains(b)) return;
  let data;
  try { data = JSON.parse(b.dataset.open); } catch (err) { return; }
  element.querySelectorAll('.rag-card.rag-active').forEach((c) => c.classList.remove('rag-active'));
  const card = b.closest('.rag-card');
  if (card) card.classList.add('rag-active');
  trigger('select', {index: 0, value: data});
});
watch('value', () => {
  // Bring the newest turn's question to the top of the log when it appears and when its answer arrives.
  const box = element.querySelector('.rag-log');
  const turns = element.querySelectorAll('.rag-turn');
  if (!box || !turns.length) { seen = ''; return; }
  const last = turns[turns.length - 1];
  const key = turns.length + ':' + last.dataset.turn + ':' + last.className;
  if (key === seen) return;
  seen = key;
  if (box.scrollHeight > box.clientHeight) box.scrollTop = Math.max(0, last.offsetTop - 4);
  else last.scrollIntoView({block: window.innerWidth < 700 ? 'start' : 'nearest'});
});
"""

VIEWER_JS = """
watch('value', () => {
  const body = element.querySelector('.rag-article-body');
  const target = element.querySelector('.rag-article-body mark') || element.querySelector('.rag-inquote');
  if (body && target && body.scrollHeight > body.clientHeight) {
    body.scrollTop = Math.max(0, target.offsetTop - body.clientHeight / 3);
  }
  if (window.innerWidth < 900) {
    element.scrollIntoView({block: 'start'});
    if (target && !(body && body.scrollHeight > body.clientHeight)) target.scrollIntoView({block: 'center'});
  }
});
"""


def _theme():
    return gr.themes.Default(
        primary_hue="blue",
        neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


def _header_html(svc: UIService) -> str:
    idx = svc.index
    updated = time.strftime("%H:%M", time.localtime(svc.updated))
    state = f"{len(idx.documents)} Artikel · {len(idx.chunks)} Abschnitte im Index · Stand {updated}"
    return (
        '<div id="rag-header"><div><h1>Nachrichten-Recherche</h1>'
        '<div class="rag-sub">Fragen an das Artikel-Archiv – jede Antwort mit wörtlichem Zitat und Quelle</div></div>'
        f'<div class="rag-state">{render.esc(state)}</div></div>'
    )


def _remove_choices(svc: UIService) -> list[tuple[str, str]]:
    idx = svc.index
    return [(f"{d.title or i} ({i})", i) for i, d in sorted(idx.documents.items(), key=lambda kv: kv[1].title or kv[0])]


def create_app(index_path, corpus_path, config: Config | None = None, embedder=None, auth=None, examples=None) -> gr.Blocks:
    """The Gradio app over the index at `index_path` (built from `corpus_path` when missing).

    `auth` is kept for `launch_app` (a (user, password) tuple); Gradio takes it at launch time."""
    svc = UIService(index_path, corpus_path, config, embedder)
    examples = EXAMPLES if examples is None else examples

    # -- handlers: Fragen
    def start_turn(question, chat, k, mode):
        q = " ".join((question or "").split())
        if not q:
            raise gr.Error("Bitte geben Sie eine Frage ein.", print_exception=False)
        with _chat_lock:
            turn = {"id": uuid.uuid4().hex[:10], "question": q, "history": list(chat["topic"]), "k": k, "mode": mode, "status": "pending"}
            # The first question after „Neues Thema“ gets the divider above it.
            turn["new_topic"] = chat.pop("break", False) and bool(chat["turns"])
            turn["html"] = render.render_turn(q, render.render_pending(len(svc.index.documents)), turn["id"], "rag-pending-turn")
            chat["turns"].append(turn)
            chat["topic"] = [*chat["topic"], q][-svc.config.history_turns :]
            del chat["turns"][:-MAX_TURNS]
            return _log_html(chat), ""

    def finish_turns(chat):
        while True:
            with _chat_lock:
                turn = next((t for t in chat["turns"] if t["status"] == "pending"), None)
                if turn is None:
                    return _log_html(chat)
                turn["status"] = "running"
            try:
                ans, hashes = svc.answer_with_hashes(turn["question"], turn["k"], turn["mode"], history=turn["history"])
                body = render.render_answer_body(ans, hashes)
                status = "rag-abstained" if ans.abstained else "rag-answered"
            except RagError as e:
                body, status = render.render_error(str(e)), "rag-failed"
            except Exception as e:  # noqa: BLE001 - show it in the chat, keep the session alive
                log.exception("Antwort fehlgeschlagen")
                body, status = render.render_error(f"Interner Fehler ({type(e).__name__}). Details im Server-Log."), "rag-failed"
            with _chat_lock:
                turn["status"] = "done"
                turn["html"] = render.render_turn(turn["question"], body, turn["id"], status)

    def clear_chat(chat):
        with _chat_lock:
            chat["turns"].clear()
            chat["topic"] = []
            chat.pop("break", None)
        return _log_html(chat), render.render_viewer_empty()

    def new_topic(chat):
        with _chat_lock:
            chat["topic"] = []
            chat["break"] = True  # the divider stays above the next question
            return _log_html(chat)

    def open_article(evt: gr.SelectData):
        return svc.article_html(evt.value)

    # -- handlers: Korpus
    def corpus_view():
        idx = svc.index
        return (
            _header_html(svc),
            render.render_corpus_table(idx.documents, svc.chunk_counts(idx)),
            gr.Dropdown(choices=_remove_choices(svc), value=None),
        )

    def _progress(progress):
        return lambda frac, msg: progress(max(0.0, min(1.0, frac)), desc=msg)

    def do_rebuild(progress=gr.Progress()):
        try:
            idx = svc.rebuild(_progress(progress))
            status = render.render_build_status(idx.last_build.line(), idx.last_build.warnings)
        except RagError as e:
            status = render.render_build_status(str(e), ok=False, title="Aufbau fehlgeschlagen")
        return (status, *corpus_view())

    def do_upload(files, overwrite, progress=gr.Progress()):
        files = files or []
        if not files:
            return (render.render_build_status("Keine Datei gewählt.", ok=False, title="Nichts hochgeladen"), *corpus_view())
        pairs = [(str(f), Path(str(f)).name) for f in files]
        try:
            saved, errors, idx = svc.upload(pairs, bool(overwrite), _progress(progress))
        except RagError as e:
            return (render.render_build_status(str(e), ok=False, title="Aufbau fehlgeschlagen"), *corpus_view())
        lines = [r.line() for r in saved] + [f"abgelehnt: {e}" for e in errors]
        warnings = [w for r in saved for w in r.warnings]
        if idx is not None:
            warnings += idx.last_build.warnings
            lines.append(idx.last_build.line())
        ok = bool(saved) and not errors
        title = "Hochgeladen, Index aktualisiert" if idx is not None else ("Nichts geändert" if not errors else "Hochladen abgelehnt")
        if idx is not None and errors:
            title = "Teilweise hochgeladen, Index aktualisiert"
        status = render.render_build_status(" · ".join(lines), warnings, ok=ok, title=title)
        return (status, *corpus_view())

    def ask_remove(doc_id):
        if not doc_id:
            status = render.render_build_status("Bitte zuerst einen Artikel auswählen.", ok=False, title="Kein Artikel gewählt")
            return gr.Row(visible=False), status
        doc = svc.index.documents.get(doc_id)
        name = doc.title if doc else doc_id
        return gr.Row(visible=True), render.render_build_status(
            f"„{name}“ ({doc_id}) wird aus dem Korpusordner gelöscht und der Index neu aufgebaut.", ok=False, title="Wirklich entfernen?"
        )

    def do_remove(doc_id, progress=gr.Progress()):
        if not doc_id:
            status = render.render_build_status("Kein Artikel gewählt.", ok=False, title="Nichts entfernt")
            return (gr.Row(visible=False), status, *corpus_view(), gr.skip())
        try:
            idx, msg = svc.remove(doc_id, _progress(progress))
            status = render.render_build_status(f"{msg} · {idx.last_build.line()}", idx.last_build.warnings, title="Artikel entfernt")
        except RagError as e:
            status = render.render_build_status(str(e), ok=False, title="Entfernen fehlgeschlagen")
        return (gr.Row(visible=False), status, *corpus_view(), render.render_viewer_empty("Artikel auswählen und „Anzeigen“ klicken."))

    def show_doc(doc_id):
        if not doc_id:
            return render.render_viewer_empty("Bitte zuerst einen Artikel auswählen.")
        return svc.article_html({"doc": doc_id})

    # -- the API endpoint
    def answer(question: str, k: int = 3, mode: str = "hybrid", history: list[str] | None = None) -> dict[str, Any]:
        """Beantwortet eine Frage aus dem Korpus: wörtliche Zitate mit Quelle, die antwortende Phrase
        (`phrase`, in jedem Zitat `highlight` als Zeichenbereich), die Übereinstimmungszeile
        (`agreement`) oder `abstained: true`, wenn der Korpus die Frage nicht beantwortet.
        k: Anzahl Zitate (1–5). mode: hybrid, dense oder bm25. history: die früheren Fragen des
        Gesprächs, älteste zuerst; eine Folgefrage wird in ihrem Licht beantwortet, `context` nennt
        dann die Frage, auf die sie sich bezieht."""
        try:
            ans, _ = svc.answer_with_hashes(question, k, mode, history=history)
        except RagError as e:
            raise gr.Error(str(e), print_exception=False) from None
        return ans.to_dict()

    with gr.Blocks(title="Nachrichten-Recherche", analytics_enabled=False) as demo:
        chat = gr.State(new_chat())  # deep-copied for each browser session
        header = gr.HTML(_header_html(svc))
        with gr.Tabs():
            with gr.Tab("Fragen", id="fragen"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=340):
                        log_box = gr.HTML(render.render_log([]), elem_id="rag-log", js_on_load=LOG_JS)
                        with gr.Row(equal_height=True):
                            question = gr.Textbox(
                                show_label=False, placeholder="Ihre Frage an die Artikel …",
                                lines=1, max_lines=4, max_length=1000, scale=5, min_width=200, autofocus=True,
                                elem_id="rag-question", submit_btn=False,
                            )
                            ask = gr.Button("Fragen", variant="primary", scale=1, min_width=90, elem_id="rag-ask")
                            topic_btn = gr.Button("Neues Thema", variant="secondary", scale=1, min_width=140, elem_id="rag-new-topic")
                        if examples:
                            gr.HTML('<span class="rag-label">Beispiele</span>')
                            with gr.Row(elem_id="rag-examples"):
                                ex_buttons = [(gr.Button(ex, size="sm", variant="secondary"), ex) for ex in examples]
                        else:
                            ex_buttons = []
                        with gr.Accordion("Einstellungen", open=False):
                            k_slider = gr.Slider(K_MIN, K_MAX, value=3, step=1, label="Anzahl Zitate", elem_id="rag-k")
                            mode_radio = gr.Radio(MODE_CHOICES, value="hybrid", label="Suchverfahren", elem_id="rag-mode")
                            clear = gr.Button("Verlauf leeren", size="sm", variant="secondary")
                    with gr.Column(scale=2, min_width=320):
                        gr.HTML('<span class="rag-label">Artikel</span>')
                        viewer = gr.HTML(render.render_viewer_empty(), elem_id="rag-viewer", js_on_load=VIEWER_JS)
            with gr.Tab("Korpus", id="korpus"):
                gr.Markdown(
                    f"Artikel im Index. Neue Artikel hochladen ({', '.join(ALLOWED_SUFFIXES)}; höchstens "
                    f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB je Datei; .jsonl: ein Artikel je Zeile mit Feld „text“, "
                    "optional „id“, „title“, „date“, „url“) – der Index wird danach automatisch aktualisiert. "
                    "Fragen werden während eines Aufbaus weiter aus dem bisherigen Stand beantwortet."
                )
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=320):
                        table = gr.HTML(render.render_corpus_table(svc.index.documents, svc.chunk_counts()), elem_id="rag-corpus")
                    with gr.Column(scale=2, min_width=300):
                        overwrite = gr.Checkbox(label="Vorhandene Dateien gleichen Namens ersetzen", value=False)
                        upload_btn = gr.UploadButton(
                            "Artikel hochladen …", file_count="multiple", file_types=list(ALLOWED_SUFFIXES),
                            type="filepath", variant="primary", elem_id="rag-upload",
                        )
                        rebuild_btn = gr.Button("Index neu aufbauen", variant="secondary", elem_id="rag-rebuild")
                        build_status = gr.HTML(
                            render.render_build_status(
                                "Hochladen, Neuaufbau und Entfernen werden hier mit Fortschritt angezeigt.", title="Bereit", ok=None
                            ),
                            elem_id="rag-build-status", min_height=70,
                        )
                        doc_pick = gr.Dropdown(
                            choices=_remove_choices(svc), value=None, label="Artikel anzeigen oder entfernen",
                            elem_id="rag-doc-pick", filterable=True,
                        )
                        with gr.Row():
                            show_btn = gr.Button("Anzeigen", size="sm", variant="secondary")
                            remove_btn = gr.Button("Entfernen …", size="sm", variant="stop", elem_id="rag-remove")
                        with gr.Row(visible=False) as confirm_row:
                            confirm_btn = gr.Button("Ja, endgültig entfernen", size="sm", variant="stop", elem_id="rag-remove-confirm")
                            cancel_btn = gr.Button("Abbrechen", size="sm")
                doc_view = gr.HTML(render.render_viewer_empty("Artikel auswählen und „Anzeigen“ klicken."), elem_id="rag-doc-view")

        # -- wiring: Fragen
        answer_opts = dict(concurrency_limit=2, concurrency_id="answer", show_progress="hidden", api_visibility="private")
        ask_inputs = [question, chat, k_slider, mode_radio]
        for trigger in (question.submit, ask.click):
            trigger(start_turn, ask_inputs, [log_box, question], queue=False, show_progress="hidden", api_visibility="private").success(
                finish_turns, [chat], [log_box], **answer_opts
            )
        for btn, ex in ex_buttons:
            btn.click(lambda c, k, m, ex=ex: start_turn(ex, c, k, m), [chat, k_slider, mode_radio], [log_box, question],
                      queue=False, show_progress="hidden", api_visibility="private").success(finish_turns, [chat], [log_box], **answer_opts)
        clear.click(clear_chat, [chat], [log_box, viewer], queue=False, api_visibility="private")
        topic_btn.click(new_topic, [chat], [log_box], queue=False, api_visibility="private")
        log_box.select(open_article, None, [viewer], show_progress="hidden", api_visibility="private")

        # -- wiring: Korpus
        build_opts = dict(concurrency_limit=1, concurrency_id="build", api_visibility="private", show_progress_on=[build_status])
        korpus_outputs = [header, table, doc_pick]
        rebuild_btn.click(do_rebuild, None, [build_status, *korpus_outputs], **build_opts)
        upload_btn.upload(do_upload, [upload_btn, overwrite], [build_status, *korpus_outputs], **build_opts)
        remove_btn.click(ask_remove, [doc_pick], [confirm_row, build_status], queue=False, api_visibility="private")
        cancel_btn.click(
            lambda: (gr.Row(visible=False), render.render_build_status("Nichts entfernt.", ok=None, title="Abgebrochen")),
            None, [confirm_row, build_status], queue=False, api_visibility="private",
        )
        confirm_btn.click(do_remove, [doc_pick], [confirm_row, build_status, *korpus_outputs, doc_view], **build_opts)
        show_btn.click(show_doc, [doc_pick], [doc_view], queue=False, api_visibility="private")
        demo.load(corpus_view, None, korpus_outputs, queue=False, api_visibility="private")

        gr.api(answer, api_name="answer", concurrency_limit=2, concurrency_id="answer")

    demo.rag_service = svc  # for tests and embedding applications
    demo.rag_auth = auth
    # Gradio 6 takes CSS and theme at launch(); these make a plain demo.launch() look right too.
    demo._deprecated_css = CSS
    demo._deprecated_theme = _theme()
    return demo


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, auth=None, block: bool = True, quiet: bool = False):
    """Start the server with the app's settings. Returns (app, local_url, share_url) when not blocking."""
    auth = auth if auth is not None else getattr(demo, "rag_auth", None)
    demo.queue(default_concurrency_limit=1, max_size=200)
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="Anmeldung für die Nachrichten-Recherche" if auth else None,
        prevent_thread_lock=not block,
        share=False,
        ssr_mode=False,
        show_error=True,
        quiet=quiet,
        max_file_size=MAX_UPLOAD_BYTES,
        theme=_theme(),
        css=CSS,
        footer_links=["api"],
        inbrowser=False,
    )


def parse_auth(value: str | None):
    """'USER:PASS' → (user, pass); None stays None."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth erwartet BENUTZER:PASSWORT")
    return (user, password)


def _terminal_progress() -> Progress:
    """Build progress for the terminal: a bar on a TTY, else one line per step."""
    if sys.stderr.isatty():
        bar, move = progress_bar("Aufbau")

        def report(frac: float, msg: str) -> None:
            move(frac, msg)
            if frac >= 1.0:
                bar.close()

        return report
    last = {"msg": None}

    def report(frac: float, msg: str) -> None:
        if msg != last["msg"]:
            print(f"  {int(frac * 100):3d} % {msg}", file=sys.stderr, flush=True)
            last["msg"] = msg

    return report


def serve(corpus="corpus", index="index", host: str = "127.0.0.1", port: int = 7860, auth=None, config: Config | None = None) -> None:
    """Bring the index up to date with the corpus (built on first start, else incrementally;
    progress in the terminal), then serve the UI until interrupted."""
    from rag.store import build_index

    if isinstance(auth, str):
        auth = parse_auth(auth)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    config = config or Config()
    if not Path(corpus).is_dir():
        raise CorpusError(f"Korpusordner nicht gefunden: {corpus}")
    print(f"Korpus: {Path(corpus).resolve()} · Index: {Path(index).resolve()}", file=sys.stderr)
    print("Modell wird geladen …", file=sys.stderr, flush=True)
    embedder = LockedEmbedder(_load_embedder(config))
    print("Index wird geprüft und bei Bedarf aufgebaut …", file=sys.stderr, flush=True)
    idx = build_index(corpus, index, config, embedder=embedder, progress=_terminal_progress(), lock_timeout=600)
    print(idx.last_build.line(), file=sys.stderr)
    for w in idx.last_build.warnings:
        print(f"Warnung: {w}", file=sys.stderr)
    demo = create_app(index, corpus, config=config, embedder=embedder, auth=auth)
    svc = demo.rag_service
    # Warm up the model so the first question is not slow.
    try:
        svc.embedder.embed_queries(["Aufwärmen"])
    except Exception:  # noqa: BLE001
        pass
    try:
        _, url, _ = launch_app(demo, host=host, port=port, auth=auth, block=False, quiet=True)
    except OSError as e:
        log.debug("launch failed: %s", e)
        print(f"Fehler: Port {port} auf {host} ist belegt oder nicht verfügbar. Anderen Port mit --port wählen.", file=sys.stderr)
        raise SystemExit(2) from None
    login = " (mit Anmeldung)" if auth else ""
    print(f"{len(svc.index.documents)} Artikel im Index. Oberfläche: {url}{login} – beenden mit Strg+C", file=sys.stderr, flush=True)
    try:
        while demo.is_running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("Beendet.", file=sys.stderr)
    finally:
        demo.close()
