"""Corpus folder → Document.

Reads .txt, .md, .html/.htm (main text via trafilatura) and .jsonl (one article per line),
recursively and in sorted order. A bad file never aborts a load: it is skipped with a one-line
German warning naming the file. Identical articles are indexed once.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import CorpusError
from .text import SENTENCE_END

__all__ = ["Document", "CorpusLoad", "load_corpus", "iter_corpus", "load_file", "dedup_key", "MAX_FILE_BYTES", "SUFFIXES"]

MAX_FILE_BYTES = 20 * 1024 * 1024
TEXT_SUFFIXES = {".txt", ".md"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".jsonl"}
TITLE_CHARS = 80

for _name in ("trafilatura", "htmldate", "courlan", "charset_normalizer"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Document:
    id: str  # path relative to the corpus root without extension, '/'-separated; jsonl: given id or "file#line"
    text: str  # NFC-normalised main text, stripped
    title: str  # given, or the first sentence shortened
    date: str | None  # ISO-like string as given ("2021-12", "2021-12-07")
    source: str  # path relative to the corpus root
    url: str | None = None
    content_hash: str = ""  # sha256 of text + title/date/url; computed when not given

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", compute_hash(self.text, self.title, self.date, self.url))


@dataclass
class CorpusLoad:
    documents: list[Document] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one German line each, naming the file
    skipped: list[str] = field(default_factory=list)  # source paths skipped (jsonl lines as "file#line")
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (duplicate id, kept original id)


def compute_hash(text: str, title: str, date: str | None, url: str | None) -> str:
    payload = json.dumps([text, title, date, url], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class _Skip(CorpusError):
    """A file that is skipped; the message is the reason (short German phrase)."""


# --- decoding ---------------------------------------------------------------------------------

_BINARY_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\x1f\x8b", b"BZh", b"\x7fELF", b"\xd0\xcf\x11\xe0")
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
# Single-byte Western/Central European code pages: for a German corpus cp1252 is the right reading.
_LATIN_FAMILY = {"cp1252", "windows_1252", "latin_1", "iso8859_1", "iso8859_15", "cp1250", "iso8859_2", "cp1257", "iso8859_4",
                 "iso8859_9", "cp1254", "mac_roman", "mac_latin2", "cp850", "cp437"}


def _textual_ratio(text: str) -> float:
    if not text:
        return 1.0
    bad = sum(1 for ch in text if (unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\t\n\r\f\v") or ch == "\ufffd")
    return 1.0 - bad / len(text)


def decode_bytes(data: bytes) -> tuple[str, str | None]:
    """(text, encoding used when it was not UTF-8). Raises _Skip for binary or undecodable data."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), (None if enc == "utf-8-sig" else enc)
            except UnicodeDecodeError:
                raise _Skip("nicht lesbar") from None
    if data.startswith(_BINARY_MAGIC) or b"\x00" in data:
        raise _Skip("Binärdatei")
    try:
        text, encoding = data.decode("utf-8"), None
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise _Skip("nicht lesbar: unbekannte Zeichenkodierung") from None
        encoding = best.encoding
        text = str(best)
        if encoding.lower().replace("-", "_") in _LATIN_FAMILY:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                pass
    if _textual_ratio(text[:100_000]) < 0.95:
        raise _Skip("Binärdatei")
    return text, encoding


# --- metadata helpers -------------------------------------------------------------------------

_DATE_VALUE = r"\d{4}(?:-\d{1,2}(?:-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?)?)?|\d{1,2}\.\s?\d{1,2}\.\s?\d{4}"
_DATE_LINE = re.compile(rf"\A\s*(?:date|datum)\b[ \t]*:?[ \t]*({_DATE_VALUE})(?=\s|\Z)[ \t]*\n?", re.IGNORECASE)
_GERMAN_DATE = re.compile(r"(\d{1,2})\.\s?(\d{1,2})\.\s?(\d{4})")


def _norm_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    s = str(value).strip()
    m = _GERMAN_DATE.fullmatch(s)
    if m:
        d, mth, y = m.groups()
        return f"{y}-{int(mth):02d}-{int(d):02d}"
    return s or None


def _take_date_line(text: str) -> tuple[str, str | None]:
    """Parse and remove a leading ' date 2021-12' / 'Datum: 07.12.2021' line."""
    m = _DATE_LINE.match(text)
    if not m:
        return text, None
    return text[m.end() :], _norm_date(m.group(1))


def _clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    return unicodedata.normalize("NFC", text).strip()


def _clean_str(value: Any) -> str | None:
    if value is None:
        return None
    s = unicodedata.normalize("NFC", " ".join(str(value).split()))
    return s or None


def make_title(text: str) -> str:
    """The first real sentence (≥ 5 words, else the first), shortened at a word to ~80 chars with '…'."""
    # The regex sentence splitter, not pysbd: titles are made for every article on every build.
    head = text[:800]
    cuts = [0, *(m.end() for m in re.finditer(SENTENCE_END, head)), len(head)]
    sentences = [" ".join(head[a:b].split()) for a, b in zip(cuts, cuts[1:]) if head[a:b].strip()]
    if not sentences:
        return ""
    title = next((s for s in sentences if len(s.split()) >= 5), sentences[0])
    if len(title) <= TITLE_CHARS:
        return title
    cut = title[: TITLE_CHARS + 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    else:
        cut = cut[:TITLE_CHARS]
    return cut.rstrip(" ,;:-–—") + "…"


def _document(doc_id: str, text: str, source: str, title=None, date=None, url=None) -> Document:
    text = _clean_text(text)
    text, line_date = _take_date_line(text)
    text = text.strip()
    if not text:
        raise _Skip("leer")
    date = _norm_date(date) or line_date
    title = _clean_str(title) or make_title(text)
    return Document(
        id=unicodedata.normalize("NFC", doc_id),
        text=text,
        title=title,
        date=date,
        source=unicodedata.normalize("NFC", source),
        url=_clean_str(url),
    )


# --- per-format readers -----------------------------------------------------------------------


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise _Skip(f"nicht lesbar: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        raise _Skip(f"zu groß: {size / 1e6:.1f} MB > {MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        return path.read_bytes()
    except OSError as e:
        raise _Skip(f"nicht lesbar: {e.strerror or e}") from None


def _load_text(text: str, doc_id: str, source: str, markdown: bool, warnings: list[str]) -> Document:
    meta: dict = {}
    body = text.lstrip("\ufeff")
    if body.lstrip().startswith("---"):
        import frontmatter

        try:
            post = frontmatter.loads(body)
            # A block that is not a mapping (prose between rules) yields no metadata: keep the text whole.
            if post.metadata or re.match(r"\s*-{3}[ \t]*\n\s*-{3}", body):
                meta, body = dict(post.metadata), post.content
        except Exception:  # noqa: BLE001 - broken YAML: keep the file as plain text
            warnings.append(f"Front Matter unlesbar, als Text gelesen: {source}")
    title = meta.get("title") or meta.get("titel")
    if not title and markdown:
        m = re.match(r"\s*#{1,6}[ \t]+(.+)", body)
        if m:
            title = m.group(1).strip().strip("#").strip()
    date = meta.get("date", meta.get("datum"))
    doc_id = str(meta["id"]) if meta.get("id") not in (None, "") else doc_id
    return _document(doc_id, body, source, title=title, date=date, url=meta.get("url"))


_TRAF_CONFIG = None


def _trafilatura_config():
    global _TRAF_CONFIG
    if _TRAF_CONFIG is None:
        from trafilatura.settings import use_config

        cfg = use_config()
        cfg.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")
        cfg.set("DEFAULT", "MIN_OUTPUT_SIZE", "1")
        _TRAF_CONFIG = cfg
    return _TRAF_CONFIG


_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "article", "section", "blockquote", "pre", "table",
               "ul", "ol"}


def _html_text_fallback(text: str) -> str:
    """Visible text of a page lxml cannot parse (nesting deeper than libxml2's 256 levels):
    a streaming stdlib parser without a depth limit; script, style and head content dropped."""
    from html.parser import HTMLParser

    out: list[str] = []
    skip = [0]

    class _Text(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in _SKIP_TAGS:
                skip[0] += 1
            elif tag in _BLOCK_TAGS:
                out.append("\n")

        def handle_endtag(self, tag):
            if tag in _SKIP_TAGS:
                skip[0] = max(0, skip[0] - 1)
            elif tag in _BLOCK_TAGS:
                out.append("\n")

        def handle_data(self, data):
            if not skip[0]:
                out.append(data)

    parser = _Text(convert_charrefs=True)
    parser.feed(text)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(out).splitlines())
    return "\n".join(line for line in lines if line)


def _load_html(text: str, doc_id: str, source: str, warnings: list[str] | None = None) -> Document:
    import trafilatura

    # Short pages: trafilatura's default falls back to a baseline that flattens paragraphs; a lower
    # threshold keeps its main extraction (one paragraph per line).
    main = trafilatura.extract(text, include_comments=False, include_tables=True, config=_trafilatura_config())
    if not main:
        main = trafilatura.extract(text, include_comments=False, include_tables=True, favor_recall=True)
    if not main:  # tiny pages: the plain conversion still drops <script>/<style>
        main = trafilatura.html2txt(text)
    if not main:  # lxml gives up on very deep nesting: read the text without a tree
        main = _html_text_fallback(text)
        if main and warnings is not None:
            warnings.append(f"HTML nicht regulär lesbar (zu tief verschachtelt?), Text vereinfacht gelesen: {source}")
    title = date = url = None
    try:
        meta = trafilatura.extract_metadata(text)
    except Exception:  # noqa: BLE001
        meta = None
    if meta is not None:
        title, date, url = meta.title, meta.date, meta.url
    if not title:
        m = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        if m:
            import html as _html

            title = _html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))
    # trafilatura puts one paragraph per line: make paragraphs explicit for the chunker.
    main = re.sub(r"\n+", "\n\n", main or "")
    return _document(doc_id, main, source, title=title, date=date, url=url)


def _jsonl_document(line: str, lineno: int, stem_id: str, source: str) -> Document:
    obj = json.loads(line)
    if not isinstance(obj, dict):
        raise _Skip("kein JSON-Objekt")
    body = obj.get("text")
    if not isinstance(body, str):
        raise _Skip("kein Feld „text“")
    given = obj.get("id")
    doc_id = str(given).strip() if given not in (None, "") else f"{stem_id}#{lineno}"
    src = str(obj["source"]) if obj.get("source") not in (None, "") else source
    return _document(doc_id, body, src, title=obj.get("title"), date=obj.get("date"), url=obj.get("url"))


def _iter_jsonl(lines: Iterable[str], stem_id: str, source: str, warnings: list[str], skipped: list[str]) -> Iterator[Document]:
    """One document per JSON line ({"text", optional "id", "title", "date", "url", "source"}); a
    bad line is skipped with a warning."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _jsonl_document(line, lineno, stem_id, source)
        except json.JSONDecodeError:
            warnings.append(f"Zeile {lineno} übersprungen (kein gültiges JSON): {source}")
            skipped.append(f"{source}#{lineno}")
        except _Skip as e:
            warnings.append(f"Zeile {lineno} übersprungen ({e}): {source}")
            skipped.append(f"{source}#{lineno}")


def _load_jsonl(text: str, stem_id: str, source: str, warnings: list[str], skipped: list[str]) -> list[Document]:
    n_skipped = len(skipped)
    docs = list(_iter_jsonl(text.splitlines(), stem_id, source, warnings, skipped))
    if not docs and len(skipped) == n_skipped:
        raise _Skip("leer")
    return docs


def _iter_csv(lines: Iterable[str], stem_id: str, source: str, warnings: list[str], skipped: list[str]) -> Iterator[Document]:
    """One document per CSV row. The first row names the columns: "text" (required), and
    optionally "id", "title", "date", "url", "source" (any case); the delimiter (, ; or tab) is
    taken from the header line."""
    lines = iter(lines)
    header = next(lines, "")
    delimiter = max(",;\t", key=header.count)
    reader = csv.reader(itertools.chain([header], lines), delimiter=delimiter)
    columns = [c.strip().lower().lstrip("\ufeff") for c in next(reader, [])]
    if "text" not in columns:
        raise CorpusError(f"CSV ohne Spalte „text“ in der ersten Zeile: {source}")
    col = {name: columns.index(name) for name in ("text", "id", "title", "date", "url", "source") if name in columns}
    for rowno, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            value = {name: (row[i] if i < len(row) else "") for name, i in col.items()}
            doc_id = value.get("id", "").strip() or f"{stem_id}#{rowno}"
            yield _document(doc_id, value["text"], value.get("source") or source, title=value.get("title"),
                            date=value.get("date"), url=value.get("url"))
        except _Skip as e:
            warnings.append(f"Zeile {rowno} übersprungen ({e}): {source}")
            skipped.append(f"{source}#{rowno}")


def _load(path: Path, root: Path, warnings: list[str], skipped: list[str]) -> list[Document]:
    source = _rel(path, root)
    doc_id = source.rsplit(".", 1)[0] if "." in path.name else source
    suffix = path.suffix.lower()
    text, encoding = decode_bytes(_read_bytes(path))
    if encoding:
        warnings.append(f"kein UTF-8, als {encoding} gelesen: {source}")
    if not text.strip():
        raise _Skip("leer")
    if suffix == ".jsonl":
        return _load_jsonl(text, doc_id, source, warnings, skipped)
    if suffix in HTML_SUFFIXES:
        return [_load_html(text, doc_id, source, warnings)]
    return [_load_text(text, doc_id, source, suffix == ".md", warnings)]


def _one_line(message: str) -> str:
    """A message as one line: control characters and line breaks (in file names) shown escaped."""
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Zl", "Zp") else ascii(ch)[1:-1] for ch in message
    )


def load_file(path: Path, root: Path) -> list[Document]:
    """Documents of one file. Raises CorpusError when the file cannot be used (the message says why).

    Warnings about usable files (another encoding, bad jsonl lines) are dropped here; load_corpus keeps them.
    """
    path, root = Path(path), Path(root)
    try:
        return _load(path, root, [], [])
    except _Skip as e:
        raise CorpusError(_one_line(f"übersprungen ({e}): {_rel(path, root)}")) from None


# --- the folder -------------------------------------------------------------------------------


def _walk(root: Path, load: CorpusLoad):
    """Files under root in sorted order; hidden entries and symlinks leaving the root are left out."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            rel = _rel(Path(folder), root) or "."
            load.warnings.append(f"Ordner übersprungen (nicht lesbar: {e.strerror or e}): {rel}")
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            rel = _rel(path, root)
            if entry.is_symlink():
                try:
                    target = path.resolve()
                except (OSError, RuntimeError):  # a symlink loop
                    target = None
                if target is None or not target.is_relative_to(root):
                    if entry.is_dir() or path.suffix.lower() in SUFFIXES:
                        load.warnings.append(f"übersprungen (Verweis außerhalb des Korpus): {rel}")
                        load.skipped.append(rel)
                    continue
                if entry.is_dir():
                    continue  # its target is walked anyway; following could loop
                if not target.exists():
                    if path.suffix.lower() in SUFFIXES:
                        load.warnings.append(f"übersprungen (Verweis ins Leere): {rel}")
                        load.skipped.append(rel)
                    continue
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(path)
            elif path.suffix.lower() in SUFFIXES and entry.is_file():
                yield path
        # Sorted depth-first: a folder's files, then its subfolders in name order.
        stack.extend(reversed(subdirs))


def dedup_key(text: str) -> str:
    """What makes two articles duplicates: the same text up to whitespace (the loader keeps the first)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


STREAM_SUFFIXES = {".jsonl": _iter_jsonl, ".csv": _iter_csv}
csv.field_size_limit(MAX_FILE_BYTES)  # one article per field; the default limit (128 KB) is too small


def _read_lines(path: Path, source: str, warnings: list[str]) -> Iterator[str]:
    """The lines of a big file, read as a stream; bytes that are not UTF-8 are replaced (counted in
    one warning at the end)."""
    bad = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad += 1
                yield raw.decode("utf-8", errors="replace")
    if bad:
        warnings.append(f"{bad} Zeilen kein UTF-8 (Zeichen ersetzt): {source}")


def _stream_file(path: Path, load: CorpusLoad) -> Iterator[tuple[Document, str]]:
    source = path.name
    stem = source.rsplit(".", 1)[0]
    read = STREAM_SUFFIXES[path.suffix.lower()]
    for doc in read(_read_lines(path, source, load.warnings), stem, source, load.warnings, load.skipped):
        yield doc, source


def _folder_files(root: Path, load: CorpusLoad) -> Iterator[tuple[Document, str]]:
    for path in _walk(root, load):
        rel = _rel(path, root)
        try:
            docs = _load(path, root, load.warnings, load.skipped)
        except _Skip as e:
            load.warnings.append(f"übersprungen ({e}): {rel}")
            load.skipped.append(rel)
            continue
        except Exception as e:  # noqa: BLE001 - a bad file must never abort the load
            load.warnings.append(f"übersprungen (Fehler: {type(e).__name__}: {e}): {rel}")
            load.skipped.append(rel)
            continue
        for doc in docs:
            yield doc, rel


def iter_corpus(root: str | Path, load: CorpusLoad | None = None) -> Iterator[Document]:
    """The documents of a corpus, one at a time: a folder (every readable file under it), or a
    single .jsonl or .csv file of any size, read as a stream. Warnings, skipped entries and
    duplicates go into `load` as they are met (complete once the iterator is exhausted). Bad files
    and lines are skipped with a warning; only a missing corpus raises."""
    load = load if load is not None else CorpusLoad()
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise CorpusError(f"Korpusordner nicht gefunden: {root}")
    if root_path.is_dir():
        entries = _folder_files(root_path.resolve(), load)
        container = None
    elif root_path.suffix.lower() in STREAM_SUFFIXES:
        entries = _stream_file(root_path, load)
        container = root_path.name
    else:
        raise CorpusError(f"Korpus ist weder ein Ordner noch eine .jsonl- oder .csv-Datei: {root}")
    return _dedup(entries, load, container)


def _dedup(entries: Iterable[tuple[Document, str]], load: CorpusLoad, container: str | None) -> Iterator[Document]:
    ids: set[str] = set()
    texts: dict[str, str] = {}  # dedup key → id of the first article with this text
    for doc, rel in entries:
        is_multi = container is not None or rel.lower().endswith(".jsonl")
        where = f"{rel} ({doc.id})" if is_multi else rel
        key = dedup_key(doc.text)
        if key in texts:
            original = texts[key]
            load.duplicates.append((doc.id, original))
            load.warnings.append(f"übersprungen (Duplikat von {original}): {where}")
            continue
        if doc.id in ids:
            alt = f"{rel}#{doc.id}" if is_multi and container is None else rel
            if alt in ids or container is not None:
                load.warnings.append(f"übersprungen (ID {doc.id} doppelt): {where}")
                load.skipped.append(f"{rel}#{doc.id}" if is_multi else rel)
                continue
            load.warnings.append(f"ID {doc.id} doppelt, als {alt} geführt: {where}")
            doc = Document(id=alt, text=doc.text, title=doc.title, date=doc.date, source=doc.source, url=doc.url)
        ids.add(doc.id)
        texts[key] = doc.id
        yield doc
    load.warnings[:] = [_one_line(w) for w in load.warnings]


def load_corpus(root: str | Path) -> CorpusLoad:
    """All documents of a corpus folder or file (see iter_corpus), in a list."""
    load = CorpusLoad()
    load.documents = list(iter_corpus(root, load))
    return load
