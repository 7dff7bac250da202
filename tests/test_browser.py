"""The web UI end to end: real model, Debian's Chromium (headless) driven by Playwright.

The app gets its own copy of the seed corpus and its own index (seeded with the embedding cache of
the session's `seed_index`, so nothing is embedded twice), so uploads never leak into other tests.
Screenshots land in artifacts/screenshots/ (git-ignored).
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "corpus"
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--disable-sync"]
ANSWER_DONE = ".rag-turn.rag-answered, .rag-turn.rag-abstained, .rag-turn.rag-failed"

NEW_ARTICLE = """Kleinstadt (dpa) - Der Bürgermeister von Kleinstadt, Hubert Wendelmann, eröffnete die neue Lauterbrücke am 3. März 2022. Die Brücke aus Stahl und Beton ist 84 Meter lang und verbindet die Altstadt mit dem Gewerbegebiet am Mühlbach.

Die Bauarbeiten hatten knapp zwei Jahre gedauert und kosteten rund 4,2 Millionen Euro. Im Gemeinderat hieß es zur Eröffnung: <img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> – ein Test, ob die Oberfläche Markup aus Artikeln als Text zeigt.

Zur Feier kamen nach Angaben der Stadtverwaltung etwa 600 Besucherinnen und Besucher.
"""  # noqa: E501 - an article: one paragraph a line


@pytest.fixture(scope="session")
def app_server(tmp_path_factory, seed_index):
    from ui.app import create_app, launch_app

    root = tmp_path_factory.mktemp("browser-app")
    corpus = root / "corpus"
    corpus.mkdir()
    for p in SEEDS.glob("*.txt"):
        shutil.copy(p, corpus / p.name)
    index = root / "index"
    index.mkdir()
    cache = Path(seed_index.root) / "embcache.sqlite"
    if cache.exists():
        shutil.copy(cache, index / "embcache.sqlite")  # the seed articles are not embedded again
    demo = create_app(index, corpus, embedder=seed_index.embedder)
    _, url, _ = launch_app(demo, host="127.0.0.1", port=None, block=False, quiet=True)  # the server takes a free port
    yield url, demo
    demo.close()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("Chromium fehlt (make test installiert es: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_server):
    url, _ = app_server
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("#rag-question textarea")
    yield pg
    ctx.close()
    assert not errors, f"JavaScript-Fehler: {errors}"


def shot(pg, name: str, full_page: bool = True) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=full_page)
    return path


def ask(pg, question: str):
    n = pg.locator(ANSWER_DONE).count()
    pg.fill("#rag-question textarea", question)
    pg.click("#rag-ask")
    pg.wait_for_function(f"document.querySelectorAll({ANSWER_DONE!r}).length > {n}")
    return pg.locator(".rag-turn").last


def test_question_shows_quoted_durations_with_sources(page):
    turn = ask(page, "Wie lange dauerte der Gipfel?")
    shot(page, "frage-gipfel-antwort-1400", full_page=False)
    text = turn.inner_text()
    assert "rag-answered" in turn.get_attribute("class"), text
    assert "rund zwei Stunden" in turn.locator(".rag-phrase").inner_text()
    # Every quote card names its source: title, doc id, character range, and marks the phrase.
    cards = turn.locator(".rag-card")
    assert cards.count() >= 2
    for i in range(cards.count()):
        card = cards.nth(i)
        assert card.locator("mark").count() == 1
        meta = card.locator(".rag-meta").inner_text()
        assert "Zeichen" in meta and "Artikel" in meta
    assert "000_aa78fff76f6e486e" in text
    # Open the first quote in the article viewer: the phrase is marked in place.
    cards.first.get_by_role("button", name="Im Artikel zeigen").click()
    viewer = page.locator("#rag-viewer article")
    viewer.wait_for()
    first_mark = cards.first.locator("mark").inner_text()
    assert page.locator("#rag-viewer .rag-article-body mark").inner_text() == first_mark
    assert page.locator("#rag-viewer .rag-inquote").count() == 1
    shot(page, "frage-gipfel-1400", full_page=False)
    page.set_viewport_size({"width": 420, "height": 900})
    page.wait_for_function("window.innerWidth === 420")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # laid out, painted
    shot(page, "frage-gipfel-420")


def test_example_button_and_follow_up_question(page):
    example = "Wo hielt sich Putin während der Videokonferenz auf?"
    page.get_by_role("button", name=example).click()  # one click asks it
    page.wait_for_selector(ANSWER_DONE)
    first = page.locator(".rag-turn").last
    assert example in first.locator(".rag-q").inner_text()
    assert first.locator(".rag-card").count() >= 1
    # A next question that names its own subject, sent with the Enter key.
    page.fill("#rag-question textarea", "Wer ist der Nationale Sicherheitsberater von Biden?")
    page.press("#rag-question textarea", "Enter")
    page.wait_for_function(f"document.querySelectorAll({ANSWER_DONE!r}).length > 1")
    turn = page.locator(".rag-turn").last
    assert "Jake Sullivan" in turn.locator(".rag-phrase").inner_text()
    assert page.locator(".rag-turn").count() == 2  # the history stays in the session
    shot(page, "frage-beispiele-1400", full_page=False)  # a full-page capture resets the scrolled log


def test_follow_up_leans_on_the_previous_question_until_a_new_topic(page):
    first = "Wie nannte Bidens Sicherheitsberater den Austausch mit Putin?"
    follow = "Und welche Alternative hat Biden laut ihm aufgezeigt?"
    ask(page, first)
    turn = ask(page, follow)
    assert first in turn.locator(".rag-context").inner_text()  # „Bezogen auf: …“ above the answer
    assert "Deeskalation" in turn.locator(".rag-card").first.inner_text()
    shot(page, "frage-folgefrage-1400", full_page=False)
    page.click("#rag-new-topic")
    page.wait_for_selector(".rag-topic-break")  # the server has reset the topic
    turn = ask(page, follow)
    assert page.locator(".rag-topic-break").count() == 1
    assert turn.locator(".rag-context").count() == 0  # asked on its own


def test_a_chat_of_five_turns_reads_each_for_what_it_asks(page):
    from test_conversation import FIVE_TURNS, check_five_turns

    got = []
    for q in FIVE_TURNS:
        turn = ask(page, q)
        abstained = "rag-abstained" in (turn.get_attribute("class") or "")
        phrase = "" if abstained else turn.locator(".rag-phrase mark").inner_text()
        sentence = turn.locator(".rag-card mark").first.inner_text() if turn.locator(".rag-card").count() else ""
        shown = turn.locator(".rag-context")
        context = shown.text_content().removeprefix("Bezogen auf").strip() if shown.count() else None
        got.append((abstained, phrase, sentence, context))
    shot(page, "gespraech-fuenf-fragen-1400")
    check_five_turns(got)


def test_settings_number_of_quotes_and_mode(page):
    page.get_by_text("Einstellungen").click()
    slider = page.locator("#rag-k input[type=range]")
    slider.wait_for(state="visible")
    slider.focus()
    slider.press("Home")  # keyboard on the slider: its minimum, 1 quote
    page.wait_for_function("document.querySelector('#rag-k input[type=number]').value === '1'")
    page.locator("#rag-mode").get_by_text("Bedeutung (dense)").click()
    turn = ask(page, "Wie viele Menschen sind im Konflikt in der Ostukraine bisher gestorben?")
    assert turn.locator(".rag-card").count() == 1
    assert "13.000" in turn.inner_text()


def test_abstention(page):
    # A question about another subject (the WM seed question is not abstained on: README, Quality).
    turn = ask(page, "Wie viele Kammern hat das menschliche Herz?")
    shot(page, "frage-nicht-im-korpus-1400", full_page=False)
    assert "rag-abstained" in turn.get_attribute("class"), turn.inner_text()
    assert "steht nicht im Korpus" in turn.inner_text()
    assert turn.locator(".rag-card").count() == 0


def test_question_with_markup_is_shown_as_text(page):
    turn = ask(page, '<img src=x onerror="window.__xss=1">Wie lange dauerte der Gipfel?')
    assert '<img src=x onerror="window.__xss=1">' in turn.locator(".rag-q").inner_text()
    assert page.evaluate("window.__xss") is None


def test_upload_rebuild_and_answer_from_new_article(page, app_server, tmp_path):
    _, demo = app_server
    svc = demo.rag_service
    src = tmp_path / "kleinstadt_bruecke.txt"
    src.write_text(NEW_ARTICLE, encoding="utf-8")
    page.get_by_role("tab", name="Korpus").click()
    with page.expect_file_chooser() as chooser:
        page.click("#rag-upload")
    chooser.value.set_files(str(src))
    status = page.locator("#rag-build-status")
    status.get_by_text("Index aktualisiert").wait_for()
    shot(page, "korpus-hochgeladen-1400")
    assert "kleinstadt_bruecke.txt: 1 Artikel hinzugefügt" in status.inner_text()
    assert "neu 1" in status.inner_text()
    assert (svc.corpus_path / "kleinstadt_bruecke.txt").exists()
    assert "kleinstadt_bruecke" in page.locator("#rag-corpus").inner_text()

    page.get_by_role("tab", name="Fragen").click()
    turn = ask(page, "Wann eröffnete der Bürgermeister von Kleinstadt die Brücke?")
    shot(page, "frage-neuer-artikel-antwort-1400", full_page=False)
    text = turn.inner_text()
    assert "rag-answered" in turn.get_attribute("class"), text
    assert "3. März 2022" in turn.locator(".rag-card").first.locator("mark").inner_text()
    assert "kleinstadt_bruecke" in turn.locator(".rag-card").first.inner_text()
    turn.locator(".rag-card").first.get_by_role("button", name="Im Artikel zeigen").click()
    page.locator("#rag-viewer article").wait_for()
    # Markup inside the article is shown as text, never run.
    assert "<script>window.__xss=2</script>" in page.locator("#rag-viewer .rag-article-body").inner_text()
    assert page.evaluate("window.__xss") is None
    shot(page, "frage-neuer-artikel-1400", full_page=False)


def test_remove_article(page, app_server, tmp_path):
    _, demo = app_server
    svc = demo.rag_service
    src = tmp_path / "wegwerf.txt"
    src.write_text("Der Gemeinderat von Wegwerfdorf beschloss am Montag eine neue Parkordnung.", encoding="utf-8")
    svc.upload([(str(src), "wegwerf.txt")])
    page.reload()
    page.get_by_role("tab", name="Korpus").click()
    page.locator("#rag-doc-pick input").fill("Wegwerfdorf")
    page.get_by_role("option", name="Wegwerfdorf", exact=False).first.click()
    page.click("#rag-remove")
    page.click("#rag-remove-confirm")
    page.locator("#rag-build-status").get_by_text("Artikel entfernt").wait_for()
    assert not (svc.corpus_path / "wegwerf.txt").exists()
    assert "wegwerf" not in svc.index.documents
    assert "Wegwerfdorf" not in page.locator("#rag-corpus").inner_text()


def test_ten_concurrent_api_clients(app_server):
    from gradio_client import Client

    url, _ = app_server
    questions = [
        "Wie lange dauerte der Gipfel?",
        "Wo hielt sich Putin während der Videokonferenz auf?",
        "Wer ist der Nationale Sicherheitsberater von Biden?",
        "Wie viele Menschen sind im Konflikt in der Ostukraine bisher gestorben?",
        "Welche Pipeline steht für Deutschland im Konflikt auf dem Spiel?",
    ] * 2
    results: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            results[i] = Client(url, verbose=False).predict(questions[i], 2, "hybrid", api_name="/answer")
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 10
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not errors, errors
    for i, r in results.items():
        assert r["question"] == questions[i]
        assert not r["abstained"] and r["passages"], r

