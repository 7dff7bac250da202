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
def build(
    corpus: Path = typer.Option(Path("corpus"), "--corpus", help="Ordner mit den Artikeln, oder eine .jsonl- oder .csv-Datei."),
    index: Path = INDEX,
    model: Optional[str] = typer.Option(None, help="Anderes Embedding-Modell (Name oder Pfad)."),
    ray: Optional[str] = typer.Option(
        None, "--ray", metavar="ADRESSE",
        help="Auf Ray einbetten: local (eigene Ray-Instanz auf diesem Rechner), auto oder host:port eines Clusters; "
        "`--ray` allein = local.",
    ),
) -> None:
    """Index aus dem Korpus aufbauen oder aktualisieren (nur Neues wird eingebettet)."""
    from .progress import progress_bar
    from .service import RagService

    config = Config(ray_address=ray) if model is None else Config(model=model, ray_address=ray)
    bar, progress = progress_bar("Aufbau", sys.stderr.isatty())
    try:
        idx = RagService(index, corpus, config).rebuild(progress)
    except RagError as e:
        bar.close()
        _fail(e)
    bar.close()
    for w in idx.last_build.warnings:
        typer.echo(f"Warnung: {w}", err=True)
    typer.echo(idx.last_build.line())


def format_answer(ans, color: bool) -> str:
    """Terminal rendering: the earlier question a follow-up leaned on, the answer, the agreement
    line, each quote in „…“ with its source line; the answering sentence underlined and the
    answering phrase in bold (** ** without colour)."""
    context = f"Bezogen auf: {ans.context}\n" if getattr(ans, "context", None) else ""
    if ans.abstained:
        return context + ans.message
    if color:
        strong = lambda s: typer.style(s, bold=True, fg="yellow")  # noqa: E731
        sentence = lambda s: typer.style(s, underline=True)  # noqa: E731
    else:
        strong = lambda s: f"**{s}**"  # noqa: E731
        sentence = lambda s: s  # noqa: E731
    lines = [f"Antwort: {strong(ans.phrase)}"]
    if ans.agreement:
        lines.append(ans.agreement.line)
    for i, p in enumerate(ans.passages, 1):
        text = p.text
        if p.highlight:
            a, b = p.highlight
            inner = text[a:b]
            if p.phrase:
                pa, pb = p.phrase[0] - a, p.phrase[1] - a
                inner = sentence(inner[:pa]) + strong(inner[pa:pb]) + sentence(inner[pb:])
            else:
                inner = strong(inner) if not color else sentence(inner)
            text = text[:a] + inner + text[b:]
        lines.append("")
        lines.append(f"[{i}] „{' '.join(text.split())}“")
        lines.append(f"    — {p.title} · {p.date or 'ohne Datum'} · {p.doc_id} · Zeichen {p.start}–{p.end}")
    return context + "\n".join(lines)


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
    from .api import service

    try:
        ans = service(index, corpus).answer(question, k=k, mode=mode)
    except RagError as e:
        _fail(e)
    if as_json:
        typer.echo(json.dumps(ans.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_answer(ans, color=sys.stdout.isatty()))


CHAT_HELP = "Fragen eingeben; Folgefragen beziehen sich auf die bisherigen. /neu: neues Thema · /ende oder Strg-D: beenden."


@app.command()
def chat(
    index: Path = INDEX,
    corpus: Path = CORPUS,
    k: int = typer.Option(3, "-k", help="Anzahl Zitate."),
    mode: Optional[str] = typer.Option(None, help="hybrid, dense oder bm25."),
) -> None:
    """Gespräch im Terminal: Fragen nacheinander, Folgefragen im Zusammenhang der bisherigen (/neu: neues Thema)."""
    from .api import service

    svc = service(index, corpus)
    color = sys.stdout.isatty()
    typer.echo(CHAT_HELP)
    history: list[str] = []
    while True:
        try:
            line = input("\nFrage> " if sys.stdin.isatty() else "")
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        question = line.strip()
        if not question:
            continue
        if question.lower() in ("/ende", "/exit", "/quit"):
            return
        if question.lower() == "/neu":
            history = []
            typer.echo("Neues Thema: die nächste Frage wird ohne die bisherigen beantwortet.")
            continue
        if question.startswith("/"):
            typer.echo(f"Unbekannter Befehl: {question}. {CHAT_HELP}")
            continue
        try:
            ans = svc.answer(question, k=k, mode=mode, history=history)
        except RagError as e:
            typer.echo(f"Fehler: {e}", err=True)
            continue
        typer.echo(format_answer(ans, color))
        history = [*history, ans.question][-svc.config.history_turns :]


@app.command("eval")
def eval_(
    files: list[Path] = typer.Argument(..., help="Fragen: unser JSONL oder SQuAD-JSON (XQuAD, GermanQuAD); mehrere zusammen."),
    corpus: Optional[list[Path]] = typer.Option(None, "--corpus", help="Korpusordner (mehrfach möglich; JSONL: Standard corpus/)."),
    distractors: Optional[Path] = typer.Option(None, "--distractors", help="Ablenkartikel: Ordner oder 10kGNAD-CSV."),
    distractors_limit: Optional[int] = typer.Option(None, "--distractors-limit", help="Nur die ersten N Ablenkartikel."),
    retriever: Optional[str] = typer.Option(None, "--retriever", help="hybrid, dense, bm25 oder all (Vergleichstabelle)."),
    k: int = typer.Option(5, "-k", help="Anzahl Zitate pro Frage."),
    as_json: bool = typer.Option(False, "--json", help="Kennzahlen als JSON."),
    failures: Optional[Path] = typer.Option(None, "--failures", help="Fehlschläge als JSONL hierhin schreiben."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Ordner für die Eval-Indizes (Standard: Benutzer-Cache)."),
    split: str = typer.Option("all", "--split", help="dev, train oder all: nur Fragen zu Artikeln dieses Teils der Trainingsaufteilung."),
    reader: Optional[list[str]] = typer.Option(
        None, "--reader", help="Leser: trained, heuristic, all (beide) oder ein Modellordner; mehrfach möglich."
    ),
    after: Optional[Path] = typer.Option(
        None, "--after", help="Gesprächsdatei: jede Frage auch nach einem zufälligen anderen Gespräch daraus stellen."
    ),
) -> None:
    """Antwortqualität auf einem Fragensatz messen (Treffer im Zitat, MRR, Quellen, Enthaltung, Latenz).

    news-qa.jsonl (Fragen mit „doc": "gnad-NNNN") wird gegen alle 10kGNAD-Artikel gestellt. Gesprächsdateien
    ({"id", "turns": [...]}) werden Zug für Zug mit Verlauf und jede Frage allein gestellt (erste Fragen /
    Folgefragen), über corpus/ und alle 10kGNAD-Artikel."""
    from .evaluation import run_eval
    from .retrieval import MODES

    if retriever is not None and retriever not in (*MODES, "all"):
        typer.echo("Fehler: --retriever muss hybrid, dense, bm25 oder all sein.", err=True)
        raise typer.Exit(2)
    try:
        out = run_eval(files, corpus=corpus, distractors=distractors, distractors_limit=distractors_limit,
                       mode=retriever, k=k, failures_path=failures, cache_dir=cache, as_json=as_json,
                       show_progress=sys.stderr.isatty(), echo=lambda s: typer.echo(s, err=True), split=split,
                       readers=_readers(reader), after=after)
    except RagError as e:
        _fail(e)
    typer.echo(out)


def _readers(names: Optional[list[str]]) -> Optional[list[str]]:
    if not names:
        return None
    out: list[str] = []
    for n in names:
        out += ["heuristic", "trained"] if n == "all" else [n]
    return list(dict.fromkeys(out))


@app.command("train-reader")
def train_reader(
    out: Path = typer.Option(None, "--out", help="Zielordner (Standard: rag/reader/weights/ im Paket)."),
    seed: int = typer.Option(0, "--seed", help="Zufallszahl: gleicher Seed, gleiche Gewichte."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochen (Standard aus TrainSettings)."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Trainierte oberste Schichten (Standard aus TrainSettings)."),
    langs: Optional[str] = typer.Option(None, "--langs", help="XQuAD-Sprachen, durch Kommas getrennt (Standard: de,en,es; all: alle 12)."),
    news_share: Optional[float] = typer.Option(None, "--news-share", help="Anteil der Nachrichten-Trainingsartikel (Lernkurve)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Nur die ersten N Fragen je Teil (zum Ausprobieren)."),
    calibrate_only: bool = typer.Option(
        False, "--calibrate-only", help="Nur Kombinierer und Schwelle des Lesers unter --out neu anpassen (Gewichte bleiben)."
    ),
) -> None:
    """Den Leser trainieren: e5-small als Frage-Antwort-Leser über alle Fenster einer Frage, aus eval/
    (news-qa, news-qa-2, XQuAD), dann Kombinierer und Enthaltungsschwelle, mit Dev-Auswertung."""
    import dataclasses

    from .reader.data import XQUAD_LANGS
    from .reader.train import WEIGHTS_DIR, TrainSettings, recalibrate, run

    lang_list = None
    if langs is not None:
        lang_list = XQUAD_LANGS if langs.strip() == "all" else tuple(x.strip() for x in langs.split(",") if x.strip())
        unknown = [x for x in lang_list if x not in XQUAD_LANGS]
        if unknown:
            typer.echo(f"Fehler: unbekannte XQuAD-Sprache {unknown[0]} (bekannt: {', '.join(XQUAD_LANGS)}).", err=True)
            raise typer.Exit(2)
    changes = {
        k: v for k, v in {
            "seed": seed, "epochs": epochs, "trainable_layers": layers, "limit": limit, "langs": lang_list, "news_share": news_share,
        }.items() if v is not None
    }
    def log(line: str) -> None:
        typer.echo(line, err=True)

    try:
        if calibrate_only:
            manifest = recalibrate(out or WEIGHTS_DIR, log=log)
        else:
            manifest = run(dataclasses.replace(TrainSettings(), **changes), out_dir=out or WEIGHTS_DIR, log=log)
    except RagError as e:
        _fail(e)
    dev = manifest["dev"].get("news", {})
    minutes = manifest.get("calibration_seconds", manifest["seconds"]) / 60
    typer.echo(
        f"Leser gespeichert ({out or WEIGHTS_DIR}) · {minutes:.0f} min · Dev (Nachrichten): "
        f"bester Satz {dev.get('best_sentence_holds_answer', 0):.3f}, F1 {dev.get('f1', 0):.3f}, "
        f"Schwelle {manifest['combiner']['threshold']:.3f}"
    )


@app.command()
def serve(
    corpus: Path = CORPUS,
    index: Path = INDEX,
    host: str = typer.Option("127.0.0.1", "--host", help="Adresse; 0.0.0.0 macht die Oberfläche im Netz sichtbar."),
    port: int = typer.Option(7860, "--port", help="Port."),
    auth: Optional[str] = typer.Option(None, "--auth", help="Anmeldung verlangen: BENUTZER:PASSWORT."),
) -> None:
    """Web-Oberfläche starten (baut den Index beim ersten Start)."""
    from ui.app import parse_auth
    from ui.app import serve as serve_ui

    try:
        credentials = parse_auth(auth)
    except ValueError as e:
        typer.echo(f"Fehler: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        serve_ui(corpus, index, host=host, port=port, auth=credentials)
    except RagError as e:
        _fail(e)


@app.command()
def bench(
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Artikel: Ordner oder 10kGNAD-CSV (Standard eval/data/10kGNAD-test.csv)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Nur die ersten N Artikel."),
    queries: int = typer.Option(100, "--queries", help="Anzahl Fragen für die Latenzmessung."),
    as_json: bool = typer.Option(False, "--json", help="Kennzahlen als JSON."),
    scale: Optional[int] = typer.Option(
        None, "--scale", help="Stattdessen ein Archiv von N Abschnitten aufbauen, öffnen und befragen (Ausgabe JSON)."
    ),
    sample: int = typer.Option(2500, "--sample", help="--scale: so viele Abschnitte vom echten Modell eingebettet."),
) -> None:
    """Geschwindigkeit messen: Aufbau, Aktualisierung, Kaltstart, Antwortzeiten, Speicher."""
    from .bench import DEFAULT_CSV, format_report, run_bench

    if scale is not None:
        from .scale import run_scale

        try:
            result = run_scale(scale, corpus, sample=sample, questions=queries, echo=lambda s: typer.echo(s, err=True))
        except RagError as e:
            _fail(e)
        typer.echo(json.dumps(result, indent=2))
        return
    try:
        result = run_bench(corpus or DEFAULT_CSV, limit=limit, queries=queries, echo=lambda s: typer.echo(s, err=True))
    except RagError as e:
        _fail(e)
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))


def optional_ray_address(argv: list[str]) -> list[str]:
    """`--ray` without an address means `--ray local` (click options take a value or none, not
    either)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--ray" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "local")
            break
    return out


def main() -> None:  # pragma: no cover
    app(args=optional_ray_address(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
