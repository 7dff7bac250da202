"""The `rag` command: build, ask, eval, serve, bench."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import Config
from .errors import RagError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fragen an deutsche Nachrichtenartikel.")

CORPUS = typer.Option(Path("corpus"), "--corpus", help="Ordner mit den Artikeln.")
INDEX = typer.Option(Path("index"), "--index", help="Ordner des Index.")


def _fail(e: RagError) -> None:
    typer.echo(f"Fehler: {e}", err=True)
    raise typer.Exit(2)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Mehr Ausgaben.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s")


@app.command()
def build(corpus: Path = CORPUS, index: Path = INDEX, model: Optional[str] = typer.Option(None, help="Anderes Embedding-Modell (Name oder Pfad).")) -> None:
    """Index aus dem Korpus aufbauen oder aktualisieren (nur Neues wird eingebettet)."""
    from tqdm import tqdm

    from .store import build_index

    config = Config() if model is None else Config(model=model)
    bar = tqdm(total=100, desc="Aufbau", unit="%", leave=False, disable=not sys.stderr.isatty())

    def progress(frac: float, msg: str) -> None:
        bar.set_description(msg)
        bar.n = int(frac * 100)
        bar.refresh()

    try:
        idx = build_index(corpus, index, config, progress=progress)
    except RagError as e:
        bar.close()
        _fail(e)
    bar.close()
    for w in idx.last_build.warnings:
        typer.echo(f"Warnung: {w}", err=True)
    typer.echo(idx.last_build.line())


def format_answer(ans, color: bool) -> str:
    """Terminal rendering: the answer, the agreement line, each quote in „…“ with its source line."""
    bold = (lambda s: typer.style(s, bold=True, fg="yellow")) if color else (lambda s: f"**{s}**")
    lines = []
    if ans.abstained:
        return ans.message
    lines.append(f"Antwort: {bold(ans.phrase)}")
    if ans.agreement:
        lines.append(ans.agreement.line)
    for i, p in enumerate(ans.passages, 1):
        text = p.text
        if p.highlight:
            a, b = p.highlight
            text = text[:a] + bold(text[a:b]) + text[b:]
        lines.append("")
        lines.append(f"[{i}] „{' '.join(text.split())}“")
        lines.append(f"    — {p.title} · {p.date or 'ohne Datum'} · {p.doc_id} · Zeichen {p.start}–{p.end}")
    return "\n".join(lines)


@app.command()
def ask(
    question: str = typer.Argument(..., help="Die Frage, auf Deutsch."),
    index: Path = INDEX,
    corpus: Path = CORPUS,
    k: int = typer.Option(3, "-k", help="Anzahl Zitate."),
    mode: Optional[str] = typer.Option(None, help="hybrid, dense oder bm25."),
    as_json: bool = typer.Option(False, "--json", help="Antwort als JSON."),
) -> None:
    """Eine Frage beantworten: Zitate mit Quelle, Antwort hervorgehoben."""
    from .api import get_index

    try:
        ans = get_index(index, corpus).answer(question, k=k, mode=mode)
    except RagError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_answer(ans, color=sys.stdout.isatty()))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
