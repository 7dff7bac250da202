"""Pure HTML rendering for the web UI: answers, quote cards, the article viewer, the corpus list.

Every string that comes from the corpus or from a user goes through `esc()` (html.escape), so no
article and no question can inject markup. The only markup in the output is written here.
"""
from __future__ import annotations

import html
import json
import re
from typing import Any, Iterable, Mapping

MONTHS = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"]

WELCOME = (
    "Stellen Sie eine Frage zu den Artikeln im Korpus – oder wählen Sie oben ein Beispiel. "
    "Jede Antwort besteht aus wörtlichen Zitaten mit Quelle; die antwortende Stelle ist markiert."
)
VIEWER_HINT = ("Klicken Sie bei einem Zitat auf „Im Artikel zeigen“: Hier erscheint dann der ganze Artikel, "
               "die zitierte Stelle ist markiert.")


def esc(value: Any) -> str:
    """HTML-escaped text (quotes too, so it is safe inside attribute values)."""
    return html.escape("" if value is None else str(value), quote=True)


def format_date(date: str | None) -> str:
    """'2021-12-07' → '07.12.2021', '2021-12' → 'Dezember 2021'; anything else as given."""
    if not date:
        return "ohne Datum"
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?", date)
    if m:
        y, mo, d = m.groups()
        return f"{int(d):02d}.{int(mo):02d}.{y}"
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", date)
    if m and 1 <= int(m.group(2)) <= 12:
        return f"{MONTHS[int(m.group(2)) - 1]} {m.group(1)}"
    return date


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered (no javascript:, data: …)."""
    if url and re.match(r"https?://[^\s<>\"']+\Z", url.strip(), re.IGNORECASE):
        return url.strip()
    return None


def mark_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """Escape `text` and wrap each (start, end, tag_open) span in markup.

    `tag_open` is one of our own tags, e.g. '<mark>' or '<span class="x">'; the close tag is derived
    from it. Nested spans (a phrase inside a quote) nest in the output; crossing spans are closed
    and reopened, so the markup is always well formed.
    """
    n = len(text)
    clean = []
    for start, end, tag in spans:
        start, end = max(0, min(int(start), n)), max(0, min(int(end), n))
        if end > start:
            clean.append((start, end, tag))
    clean.sort(key=lambda s: (s[0], -s[1]))  # outer first
    cuts = sorted({0, n, *(s[0] for s in clean), *(s[1] for s in clean)})
    out: list[str] = []
    stack: list[tuple[int, int, str]] = []
    for a, b in zip(cuts, cuts[1:]):
        active = [s for s in clean if s[0] <= a < s[1]]
        keep = 0
        while keep < len(stack) and keep < len(active) and stack[keep] == active[keep]:
            keep += 1
        while len(stack) > keep:
            out.append(_close(stack.pop()[2]))
        for s in active[keep:]:
            out.append(s[2])
            stack.append(s)
        out.append(esc(text[a:b]))
    while stack:
        out.append(_close(stack.pop()[2]))
    return "".join(out)


def _close(tag: str) -> str:
    name = re.match(r"<(\w+)", tag).group(1)
    return f"</{name}>"


def _as_dict(answer: Any) -> dict:
    return answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)


def open_payload(passage: Mapping, content_hash: str | None = None) -> str:
    """The JSON the "Im Artikel zeigen" button sends back: which article and which span to mark."""
    hl = passage.get("highlight")
    data = {"doc": passage["doc_id"], "start": passage["start"], "end": passage["end"]}
    if hl:
        data["hl"] = [passage["start"] + hl[0], passage["start"] + hl[1]]
    if content_hash:
        data["hash"] = content_hash
    return json.dumps(data, ensure_ascii=False)


def render_quote(passage: Mapping, number: int, content_hash: str | None = None) -> str:
    """One quote card: the verbatim passage (answer phrase in <mark>), then its source line."""
    text = passage["text"]
    hl = passage.get("highlight")
    ph = passage.get("phrase")
    spans = [(hl[0], hl[1], "<mark>")] if hl else []
    if ph:
        spans.append((ph[0], ph[1], '<strong class="rag-ans">'))
    body = mark_spans(text, spans)
    url = safe_url(passage.get("url"))
    link = f' · <a href="{esc(url)}" target="_blank" rel="noopener noreferrer">Originalquelle</a>' if url else ""
    return (
        f'<li class="rag-card">'
        f'<blockquote class="rag-quote"><span class="rag-card-num" aria-label="Zitat {number}">{number}</span>„{body}“</blockquote>'
        f'<div class="rag-meta"><span class="rag-title">{esc(passage.get("title") or passage["doc_id"])}</span>'
        f'<span class="rag-date">{esc(format_date(passage.get("date")))}</span>'
        f'<span class="rag-src">Artikel <code>{esc(passage["doc_id"])}</code></span>'
        f'<span class="rag-range">Zeichen {int(passage["start"])}–{int(passage["end"])}</span>{link}</div>'
        f'<button type="button" class="rag-open" data-open="{esc(open_payload(passage, content_hash))}">'
        f"Im Artikel zeigen</button>"
        f"</li>"
    )


def render_answer_body(answer: Any, hashes: Mapping[str, str] | None = None) -> str:
    """The answer part of a turn: phrase, agreement line, quote cards — or the abstention."""
    a = _as_dict(answer)
    hashes = hashes or {}
    # A follow-up names the earlier question it was understood with, so a misunderstanding shows.
    context = f'<div class="rag-context"><span class="rag-label">Bezogen auf</span> {esc(a["context"])}</div>' if a.get("context") else ""
    if a.get("abstained") or not a.get("passages"):
        msg = a.get("message") or "Das steht nicht im Korpus."
        head, sep, rest = msg.partition(":")
        text = f"<strong>{esc(head)}{esc(sep)}</strong> {esc(rest.strip())}" if sep else f"<strong>{esc(msg)}</strong>"
        return context + (
            f'<div class="rag-abstain"><span class="rag-abstain-icon" aria-hidden="true">∅</span>'
            f'<div><span class="rag-label">Keine belegte Antwort</span><div>{text}</div></div></div>'
        )
    parts = [context, f'<div class="rag-phrase"><span class="rag-label">Antwort</span> <mark>{esc(a.get("phrase"))}</mark></div>']
    agr = a.get("agreement")
    if agr:
        cls = "rag-agree" if agr.get("agree") else "rag-disagree"
        icon = "✓" if agr.get("agree") else "⚠"
        parts.append(f'<div class="rag-agreement {cls}"><span aria-hidden="true">{icon}</span> {esc(agr.get("line"))}</div>')
    n = len(a["passages"])
    parts.append(f'<div class="rag-label rag-quotes-head">{n} {"Zitat" if n == 1 else "Zitate"}</div>')
    cards = "".join(render_quote(p, i, hashes.get(p["doc_id"])) for i, p in enumerate(a["passages"], 1))
    parts.append(f'<ol class="rag-cards">{cards}</ol>')
    return "".join(parts)


def render_question(question: str) -> str:
    return f'<div class="rag-q"><span class="rag-label">Frage</span> {esc(question)}</div>'


def render_turn(question: str, body_html: str, turn_id: str | int = "", status: str = "") -> str:
    """One chat turn; `body_html` must come from this module (render_answer_body, render_pending, render_error)."""
    cls = f"rag-turn {status}".strip()
    return (f'<section class="{esc(cls)}" data-turn="{esc(turn_id)}">{render_question(question)}'
            f'<div class="rag-a">{body_html}</div></section>')


def render_pending(n_articles: int | None = None) -> str:
    where = f"in {n_articles} Artikeln " if n_articles else ""
    return f'<div class="rag-pending"><span class="rag-dots" aria-hidden="true"></span> Suche {esc(where)}…</div>'


def render_error(message: str) -> str:
    return f'<div class="rag-error"><strong>Fehler:</strong> {esc(message)}</div>'


def render_topic_break() -> str:
    """The line in the log where the user started a new topic (earlier questions no longer count)."""
    return '<div class="rag-topic-break" role="separator"><span>Neues Thema</span></div>'


def render_log(turns_html: list[str]) -> str:
    """The whole chat log (oldest first); a short hint when empty."""
    if not turns_html:
        return f'<div class="rag-log rag-empty"><p>{esc(WELCOME)}</p></div>'
    return '<div class="rag-log">' + "".join(turns_html) + "</div>"


def render_article(
    doc: Any,
    quote: tuple[int, int] | None = None,
    highlight: tuple[int, int] | None = None,
    note: str | None = None,
) -> str:
    """The whole article; the quoted span shaded and the answering phrase in <mark>."""
    text = doc.text
    spans = []
    if quote:
        spans.append((quote[0], quote[1], '<span class="rag-inquote" id="rag-quote">'))
    if highlight:
        spans.append((highlight[0], highlight[1], "<mark>"))
    url = safe_url(getattr(doc, "url", None))
    link = f' · <a href="{esc(url)}" target="_blank" rel="noopener noreferrer">Originalquelle</a>' if url else ""
    where = f" · zitiert: Zeichen {int(quote[0])}–{int(quote[1])}" if quote else ""
    note_html = f'<div class="rag-note">{esc(note)}</div>' if note else ""
    return (
        f'<article class="rag-article">'
        f'<header><h3>{esc(doc.title or doc.id)}</h3>'
        f'<div class="rag-meta"><span>{esc(format_date(doc.date))}</span><span>Artikel <code>{esc(doc.id)}</code></span>'
        f"<span>Datei {esc(doc.source)}</span><span>{len(text)} Zeichen{where}</span>{link}</div></header>"
        f"{note_html}"
        f'<div class="rag-article-body">{mark_spans(text, spans)}</div>'
        f"</article>"
    )


def render_viewer_empty(message: str = VIEWER_HINT) -> str:
    return f'<div class="rag-viewer-empty">{esc(message)}</div>'


def render_corpus_table(documents: Mapping[str, Any], chunk_counts: Mapping[str, int]) -> str:
    """The indexed articles as a table: title, date, chunks, id, file."""
    if not documents:
        return '<div class="rag-viewer-empty">Der Index enthält noch keine Artikel. Laden Sie Artikel hoch.</div>'
    rows = []
    for doc_id, d in sorted(documents.items(), key=lambda kv: ((kv[1].date or ""), kv[0]), reverse=True):
        rows.append(
            f"<tr><td class=\"rag-col-title\">{esc(d.title or doc_id)}</td><td>{esc(format_date(d.date))}</td>"
            f"<td class=\"rag-num\">{int(chunk_counts.get(doc_id, 0))}</td><td><code>{esc(doc_id)}</code></td></tr>"
        )
    return (
        f'<div class="rag-table-wrap"><table class="rag-table"><thead><tr><th>Titel</th><th>Datum</th>'
        f'<th class="rag-num">Abschnitte</th><th>ID</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def render_build_status(line: str, warnings: Iterable[str] = (), ok: bool | None = True, title: str = "Index aktualisiert") -> str:
    """A status box for corpus changes; ok=None is neutral (idle)."""
    warnings = list(warnings)
    warn_html = ""
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings[:20])
        more = f"<li>… und {len(warnings) - 20} weitere</li>" if len(warnings) > 20 else ""
        warn_html = f'<details class="rag-warnings"><summary>{len(warnings)} Hinweise</summary><ul>{items}{more}</ul></details>'
    cls = "rag-status-idle" if ok is None else ("rag-status-ok" if ok else "rag-status-err")
    return f'<div class="rag-status {cls}"><strong>{esc(title)}</strong><div>{esc(line)}</div>{warn_html}</div>'
