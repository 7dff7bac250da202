"""Corpus folder administration for the web UI: safe uploads and article removal.

Nothing here ever writes outside the corpus folder: names are sanitised (no paths, no `..`, only
known article types), the target is checked to resolve inside the folder, and writes go through a
temporary file in the same folder followed by an atomic rename.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from rag.corpus import dedup_key
from rag.errors import CorpusError

ALLOWED_SUFFIXES = (".txt", ".md", ".html", ".htm", ".jsonl")
MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_NAME_CHARS = 120
_NAME_RE = re.compile(r"[\w][\w.\-]*\Z")


class UploadError(CorpusError):
    """An upload that is refused; the message (German, one line) says why."""


def sanitize_filename(name: str) -> str:
    """A safe plain file name for the corpus folder, or UploadError.

    Refused: empty names, absolute paths, any directory part or `..`, hidden files, control
    characters, unknown types. Spaces become '_'; the name is NFC-normalised.
    """
    if not isinstance(name, str) or not name.strip():
        raise UploadError("Leerer Dateiname.")
    raw = unicodedata.normalize("NFC", name.strip())
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise UploadError("Der Dateiname enthält Steuerzeichen.")
    if raw.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", raw):
        raise UploadError(f"Absolute Pfade sind nicht erlaubt: {raw}")
    if "/" in raw or "\\" in raw:
        raise UploadError(f"Nur Dateinamen, keine Ordner: {raw}")
    if ".." in raw:
        raise UploadError(f"„..“ ist im Dateinamen nicht erlaubt: {raw}")
    if raw.startswith("."):
        raise UploadError(f"Versteckte Dateien sind nicht erlaubt: {raw}")
    suffix = Path(raw).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        allowed = ", ".join(ALLOWED_SUFFIXES)
        raise UploadError(f"Dateityp {suffix or '(ohne Endung)'} nicht erlaubt (erlaubt: {allowed}): {raw}")
    safe = re.sub(r"\s+", "_", raw)
    stem = safe[: -len(suffix)]
    if not stem or not _NAME_RE.match(safe):
        raise UploadError(f"Ungültiger Dateiname (nur Buchstaben, Ziffern, „_“, „-“, „.“): {raw}")
    if len(safe) > MAX_NAME_CHARS:
        raise UploadError(f"Dateiname zu lang (höchstens {MAX_NAME_CHARS} Zeichen): {raw}")
    return stem + suffix  # the suffix in lower case, so the corpus loader recognises it


def inside(folder: Path, target: Path) -> bool:
    """True when `target` resolves to a path inside `folder` (symlinks followed)."""
    folder = folder.resolve()
    try:
        return target.resolve().parent == folder or target.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):
        return False


@dataclass
class UploadResult:
    path: Path
    name: str
    doc_ids: list[str]
    replaced: bool = False
    unchanged: bool = False
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        ids = ", ".join(self.doc_ids[:5]) + (" …" if len(self.doc_ids) > 5 else "")
        n = len(self.doc_ids)
        what = f"{n} Artikel" if n != 1 else "1 Artikel"
        if self.unchanged:
            return f"{self.name}: unverändert (gleicher Inhalt schon vorhanden)"
        verb = "ersetzt" if self.replaced else "hinzugefügt"
        return f"{self.name}: {what} {verb} ({ids})"


def save_upload(
    src: str | Path,
    corpus_dir: str | Path,
    name: str | None = None,
    overwrite: bool = False,
    existing: Mapping[str, object] | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
) -> UploadResult:
    """Copy an uploaded file into the corpus folder after checking it.

    `name` is the user's file name (default: the name of `src`); `existing` maps the doc ids that
    are indexed now to their Document (to refuse silently replacing another article). With
    `overwrite=False` an existing file of the same name is never replaced.
    """
    from rag.corpus import load_file

    corpus = Path(corpus_dir)
    if not corpus.is_dir():
        raise UploadError(f"Korpusordner nicht gefunden: {corpus}")
    src = Path(src)
    safe = sanitize_filename(name if name is not None else src.name)
    try:
        size = src.stat().st_size
    except OSError:
        raise UploadError(f"Hochgeladene Datei nicht lesbar: {safe}") from None
    if size > max_bytes:
        raise UploadError(f"Datei zu groß: {size / 1e6:.1f} MB (höchstens {max_bytes / 1e6:.0f} MB): {safe}")
    if size == 0:
        raise UploadError(f"Die Datei ist leer: {safe}")

    target = corpus / safe
    if not inside(corpus, target) or target.is_symlink():
        raise UploadError(f"Ungültiges Ziel: {safe}")
    exists = target.exists()
    if exists and not target.is_file():
        raise UploadError(f"Im Korpus gibt es bereits einen Ordner dieses Namens: {safe}")
    if exists and src.read_bytes() == target.read_bytes():
        return UploadResult(target, safe, [], unchanged=True)
    if exists and not overwrite:
        raise UploadError(f"Eine Datei „{safe}“ gibt es schon im Korpus. Zum Ersetzen „Vorhandene Dateien ersetzen“ ankreuzen.")

    # Parse it exactly as the index will, in a private folder, before it touches the corpus.
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
        probe = Path(tmp) / safe
        shutil.copyfile(src, probe)
        try:
            docs = load_file(probe, Path(tmp))
        except CorpusError as e:
            raise UploadError(f"Datei nicht verwendbar: {e}") from None
    if not docs:
        raise UploadError(f"Die Datei enthält keinen lesbaren Artikel: {safe}")

    existing = existing or {}
    own = {i for i, d in existing.items() if getattr(d, "source", None) == safe}  # articles of the file replaced
    clashes = [d.id for d in docs if d.id in existing and d.id not in own]
    if clashes and not overwrite:
        raise UploadError(
            f"Artikel-ID schon vergeben ({', '.join(clashes[:3])}): {safe}. Bitte umbenennen oder „Vorhandene Dateien ersetzen“ ankreuzen."
        )
    texts = {dedup_key(getattr(d, "text", "")): i for i, d in existing.items() if i not in own}
    dups = [f"{d.id} = {texts[dedup_key(d.text)]}" for d in docs if dedup_key(d.text) in texts]
    if dups and len(dups) == len(docs):
        raise UploadError(f"Dieser Inhalt steht schon im Korpus ({dups[0]}): {safe}")

    part = corpus / f".{safe}.{uuid.uuid4().hex[:8]}.part"  # hidden: the corpus loader skips it
    try:
        shutil.copyfile(src, part)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    warnings = [f"schon im Korpus, wird übersprungen: {d}" for d in dups]
    return UploadResult(target, safe, [d.id for d in docs], replaced=exists, warnings=warnings)


def remove_article(doc: object, corpus_dir: str | Path) -> str:
    """Delete the file of an indexed article from the corpus folder; returns a German summary.

    A .jsonl file with several articles keeps the others: only the article's line is blanked
    (blank lines are skipped and keep the line numbers, and with them the ids, of the rest).
    """
    corpus = Path(corpus_dir)
    doc_id = doc.id
    source = getattr(doc, "source", "") or ""
    candidates: list[Path] = []
    if source:
        p = corpus / source
        if inside(corpus, p) and p.is_file():
            candidates.append(p)
    if not candidates or candidates[0].suffix.lower() == ".jsonl" or _file_doc_id(corpus, candidates[0]) != doc_id:
        # jsonl records may name another source; find the file by the id rules of the corpus loader.
        candidates = [p for p in _corpus_files(corpus) if _file_has(corpus, p, doc_id)] or candidates
    if not candidates:
        raise CorpusError(f"Keine Datei für Artikel {doc_id} im Korpus gefunden.")
    path = candidates[0]
    if not inside(corpus, path):
        raise CorpusError(f"Datei liegt außerhalb des Korpus: {path}")
    rel = path.resolve().relative_to(corpus.resolve()).as_posix()
    if path.suffix.lower() != ".jsonl":
        path.unlink()
        return f"Datei {rel} gelöscht."
    lines = path.read_text(encoding="utf-8").splitlines()
    hits = _jsonl_lines(corpus, path, doc_id)
    if not hits:
        raise CorpusError(f"Artikel {doc_id} nicht in {rel} gefunden.")
    remaining = [ln for i, ln in enumerate(lines, 1) if i not in hits and ln.strip()]
    if not remaining:
        path.unlink()
        return f"Datei {rel} gelöscht."
    new = "\n".join("" if i in hits else ln for i, ln in enumerate(lines, 1)) + "\n"
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    part.write_text(new, encoding="utf-8")
    os.replace(part, path)
    return f"Artikel {doc_id} aus {rel} entfernt."


def _corpus_files(corpus: Path) -> Iterable[Path]:
    for p in sorted(corpus.rglob("*")):
        rel = p.relative_to(corpus)
        if any(part.startswith(".") for part in rel.parts) or p.is_symlink() or not p.is_file():
            continue
        if p.suffix.lower() in ALLOWED_SUFFIXES:
            yield p


def _file_doc_id(corpus: Path, path: Path) -> str:
    rel = path.relative_to(corpus).as_posix()
    return rel.rsplit(".", 1)[0]


def _file_has(corpus: Path, path: Path, doc_id: str) -> bool:
    if path.suffix.lower() == ".jsonl":
        return bool(_jsonl_lines(corpus, path, doc_id))
    return _file_doc_id(corpus, path) == doc_id or _front_matter_id(path) == doc_id


def _front_matter_id(path: Path) -> str | None:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return None
    m = re.match(r"\s*---\s*\n(.*?)\n---", head, re.DOTALL)
    if m:
        idm = re.search(r"^id\s*:\s*['\"]?([^'\"\n]+?)['\"]?\s*$", m.group(1), re.MULTILINE)
        if idm:
            return unicodedata.normalize("NFC", idm.group(1).strip())
    return None


def _jsonl_lines(corpus: Path, path: Path, doc_id: str) -> set[int]:
    """Line numbers (1-based) of the records of `path` whose id is `doc_id` (the loader's rules)."""
    stem = _file_doc_id(corpus, path)
    rel = path.relative_to(corpus).as_posix()
    hits = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return hits
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        given = obj.get("id")
        rid = str(given).strip() if given not in (None, "") else f"{stem}#{lineno}"
        rid = unicodedata.normalize("NFC", rid)
        if doc_id in (rid, f"{rel}#{rid}"):
            hits.add(lineno)
    return hits
