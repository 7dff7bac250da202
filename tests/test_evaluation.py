"""`rag eval`: metric arithmetic on prepared answers, question-set and distractor parsing, the cached
eval index (fake embedder), and one smoke run of the command with the real model."""
from __future__ import annotations

import json
import math
import unicodedata

import pytest

from conftest import EVAL, ROOT
from fakes import FakeEmbedder
from rag.answering import Answer
from rag.config import Config
from rag.errors import RagError
from rag.evaluation import (
    EVAL_DIR,
    QAItem,
    build_eval_index,
    compute_metrics,
    contains_answer,
    evaluate,
    failures,
    format_metrics,
    load_distractors,
    load_qa,
    load_squad,
    normalize,
    percentile,
    run_questions,
)
from rag.retrieval import Passage

SEED_QA = EVAL / "seed-qa.jsonl"


# ---------------------------------------------------------------- matching


def test_normalize_quotes_dashes_whitespace_case_and_nfc():
    decomposed = unicodedata.normalize("NFD", "Grüße")
    assert normalize(f"  „{decomposed}“ –\u00a0\n STRASSE ") == normalize('"grüße" - strasse')
    assert normalize("«A» ‚b‘ ’c' — d") == normalize('"a" "b" "c" - d')
    assert contains_answer("Biden sagte: „Gut, Sie wieder zu sehen.“", ['"gut, sie  wieder zu sehen'])
    assert contains_answer("Die Nord\u00a0Stream–2-Pipeline", ["nord stream-2"])
    assert not contains_answer("Nord Stream", ["Nord Stream 2"])
    assert not contains_answer("irgendein Text", [])
    assert not contains_answer("irgendein Text", ["", "   "])  # empty expectations never match


# ---------------------------------------------------------------- metric arithmetic


def P(doc_id: str, text: str, highlighted: str | None = None, score: float = 1.0) -> Passage:
    """A passage whose highlight is the first occurrence of `highlighted` (or none)."""
    hl = None
    if highlighted:
        a = text.index(highlighted)
        hl = (a, a + len(highlighted))
    return Passage(text=text, doc_id=doc_id, title=doc_id, date=None, source=f"{doc_id}.txt", start=0, end=len(text), score=score,
                   highlight=hl)


class StubIndex:
    """Returns prepared answers; records the calls."""

    def __init__(self, answers: dict[str, Answer], retrieved: dict[str, list[str]] | None = None):
        self.answers = answers
        self.retrieved = retrieved or {}
        self.calls: list[tuple[str, int, str | None]] = []

    def answer(self, question, k=3, mode=None):
        self.calls.append((question, k, mode))
        return self.answers.get(question) or Answer(question, [], True, 0.0)

    def retrieve(self, question, k=5, mode=None):
        return [P(d, "x") for d in self.retrieved.get(question, [])][:k]


ITEMS = [
    QAItem("q1", "Wie lange?", ["zwei Stunden"], ["a"]),
    QAItem("q2", "Was sagte er?", ["„Gut, Sie wieder zu sehen“"], ["b"]),
    QAItem("q3", "Wer?", ["Jake Sullivan"], ["c"]),
    QAItem("q4", "Wo?", ["Sotschi"], ["d"]),
    QAItem("q5", "Wer gewann die WM 2014?", [], []),
    QAItem("q6", "Wer gewann die WM 2010?", [], []),
]


def stub() -> StubIndex:
    answers = {
        # top-1 quote holds it and the highlight is right
        "Wie lange?": Answer("Wie lange?", [P("a", "Der Gipfel dauerte zwei Stunden.", "zwei Stunden"), P("x", "Anderes.")], False, 0.9),
        # only quote 3 holds it (other quote style, other case); top-1 highlight wrong
        "Was sagte er?": Answer("Was sagte er?", [
            P("x", "Biden lächelte.", "Biden"), P("y", "Dann ging er."), P("b", 'Er sagte: "gut, Sie wieder  zu sehen".', "Er sagte")
        ], False, 0.85),
        # answerable, but abstained
        "Wer?": Answer("Wer?", [], True, 0.5),
        # answered from the wrong articles, answer nowhere
        "Wo?": Answer("Wo?", [P("x", "In Moskau.", "Moskau"), P("y", "Im Kreml.", "Kreml")], False, 0.81),
        # unanswerable: one correct abstention, one wrong answer
        "Wer gewann die WM 2014?": Answer("Wer gewann die WM 2014?", [], True, 0.3),
        "Wer gewann die WM 2010?": Answer("Wer gewann die WM 2010?", [P("z", "Spanien gewann.", "Spanien")], False, 0.82),
    }
    retrieved = {"Wie lange?": ["a", "x"], "Was sagte er?": ["x", "b"], "Wer?": ["c"], "Wo?": ["x", "y"]}
    return StubIndex(answers, retrieved)


def test_metrics_on_prepared_answers():
    idx = stub()
    m = evaluate(ITEMS, idx, k=5, mode="bm25")
    assert all(call[1:] == (5, "bm25") for call in idx.calls)
    assert len(idx.calls) == len(ITEMS) + 1  # one warm-up call
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (6, 4, 2)
    assert m["answer_in_top1"] == pytest.approx(1 / 4)
    assert m["answer_in_top3"] == pytest.approx(2 / 4)
    assert m["answer_in_top5"] == pytest.approx(2 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["source_recall_at_k"] == pytest.approx(2 / 4)
    assert m["retrieval_source_recall_at_k"] == pytest.approx(3 / 4)
    assert m["highlight_accuracy"] == pytest.approx(1 / 4)
    # abstained: q3 (wrong) and q5 (right); unanswerable: q5 (abstained) and q6 (answered)
    assert m["abstained"] == 2
    assert m["abstention_precision"] == pytest.approx(1 / 2)
    assert m["abstention_recall"] == pytest.approx(1 / 2)
    assert m["wrongly_abstained"] == 1 and m["wrongly_answered"] == 1
    lengths = sorted([32, 8, 15, 13, 38, 10, 9, 15])  # every returned quote
    assert m["median_quote_chars"] == pytest.approx((lengths[3] + lengths[4]) / 2)
    assert m["latency_p50_ms"] >= 0 and m["latency_p95_ms"] >= m["latency_p50_ms"]
    json.dumps(m)  # the --json output


def test_k_limits_the_counted_quotes():
    m = evaluate(ITEMS, stub(), k=2)
    assert m["answer_in_top1"] == pytest.approx(1 / 4)
    assert m["answer_in_top3"] is None and m["answer_in_top5"] is None  # not measurable with k=2
    assert m["mrr"] == pytest.approx(1 / 4)  # q2's answer was in quote 3, beyond k
    assert m["source_recall_at_k"] == pytest.approx(1 / 4)


def test_failures_name_each_miss_with_what_came_back():
    results = run_questions(ITEMS, stub(), k=5)
    recs = {r["id"]: r for r in failures(results)}
    assert set(recs) == {"q2", "q3", "q4", "q6"}
    assert recs["q2"]["reasons"] == ["answer_at_rank_3", "highlight_miss"]
    assert recs["q2"]["answer_rank"] == 3
    assert [p["doc_id"] for p in recs["q2"]["returned"]] == ["x", "y", "b"]
    assert recs["q2"]["returned"][0]["highlighted"] == "Biden"
    assert recs["q3"]["reasons"] == ["wrongly_abstained"] and recs["q3"]["abstained"] is True
    assert recs["q3"]["confidence"] == pytest.approx(0.5)
    assert recs["q4"]["reasons"] == ["not_in_top1", "highlight_miss"]
    assert recs["q4"]["expected_sources"] == ["d"] and recs["q4"]["expected_answers"] == ["Sotschi"]
    assert recs["q6"]["reasons"] == ["should_abstain"]
    json.dumps(list(recs.values()), ensure_ascii=False)


def test_no_unanswerable_questions_gives_na_recall_and_counts_wrong_abstentions():
    m = evaluate(ITEMS[:4], stub(), k=5)
    assert m["abstention_recall"] is None
    assert m["abstention_precision"] == 0.0  # the one abstention (q3) was wrong
    assert m["wrongly_abstained"] == 1 and m["wrongly_abstained_rate"] == pytest.approx(1 / 4)
    table = format_metrics(m, title="xquad")
    assert "recall" in table and "n/a" in table and "MRR" in table


def test_empty_run_has_no_ratios():
    m = compute_metrics([], k=5)
    assert m["answer_in_top1"] is None and m["mrr"] is None and m["latency_p50_ms"] is None
    format_metrics(m)


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    values = [float(v) for v in range(100, 0, -1)]  # 100 … 1, unsorted on purpose
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 100.0
    assert percentile(values, 0.5) == 51.0 and percentile(values, 0.95) == 95.0


# ---------------------------------------------------------------- the shipped data


def test_question_sets_and_articles_ship_with_the_repository():
    """A clone needs nothing beside it: the defaults point into the repository's eval/ folder."""
    from rag.bench import DEFAULT_CSV, DEFAULT_QA

    assert EVAL_DIR == EVAL and EVAL_DIR.is_relative_to(ROOT)
    assert DEFAULT_CSV == EVAL / "data" / "10kGNAD-test.csv" and DEFAULT_QA == EVAL / "xquad-de-dev.json"
    assert len(load_distractors(DEFAULT_CSV)) == 1028
    seed = load_qa(SEED_QA)[0]
    assert len(seed) == 20 and sum(not i.answerable for i in seed) == 1
    xquad, docs = load_qa(DEFAULT_QA)
    assert len(xquad) == 612 and len(docs) == 120
    readme = (EVAL / "README.md").read_text(encoding="utf-8")
    shipped = sorted(p.relative_to(EVAL).as_posix() for p in EVAL.rglob("*") if p.is_file() and p.name != "README.md")
    assert "news-qa.jsonl" in shipped and "conversations-dev.jsonl" in shipped and len(shipped) >= 16
    for name in shipped:  # every file (or its folder) is described, with its origin and licence
        assert f"`{name.split('/')[0] if name.startswith('xquad-dev-other') else name}" in readme, name


def test_no_code_reads_outside_the_repository():
    """Nothing under rag/, ui/, tests/, bench/ nor the Makefile reads the developers' shared folder
    beside the checkout (a user's clone has none)."""
    parent_shared = ["..", "shared"]
    patterns = ["/".join(parent_shared), 'parent / "' + parent_shared[1] + '"']
    files = [ROOT / "Makefile", ROOT / ".ci" / "run"]
    for folder in ("rag", "ui", "tests", "bench"):
        files += [p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            assert pattern not in text, f"{path.relative_to(ROOT)} reads {pattern}"


# ---------------------------------------------------------------- question sets


SQUAD = {
    "version": "2.0",
    "data": [
        {
            "title": "Fresno,_California",
            "paragraphs": [
                {
                    "context": "Fresno ist eine Stadt im Central Valley. Sie hat etwa 500.000 Einwohner.",
                    "qas": [
                        {"id": "f1", "question": "Wie viele Einwohner hat Fresno?", "answers": [
                            {"answer_start": 50, "text": "etwa 500.000"}, {"answer_start": 55, "text": "etwa 500.000"},
                            {"answer_start": 55, "text": "500.000"},
                        ]},
                        {"id": "f2", "question": "Wer regiert Fresno?", "answers": [], "is_impossible": True},
                    ],
                },
                {"context": "Im Sommer ist es heiß.",
                 "qas": [{"id": "f3", "question": "Wann ist es heiß?", "answers": [{"answer_start": 3, "text": "Sommer"}]}]},
            ],
        },
        {"title": "Fresno California",
         "paragraphs": [{"context": "Zweiter Artikel.", "qas": [{"id": "g1", "question": "Was?", "answers": [{"text": "Zweiter"}]}]}]},
    ],
}


def test_squad_paragraphs_become_documents(tmp_path):
    path = tmp_path / "xquad-de-mini.json"
    path.write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    items, docs = load_qa(path)
    assert [d.id for d in docs] == ["xquad/fresno-california/0", "xquad/fresno-california/1", "xquad/fresno-california-2/0"]
    assert docs[0].title == "Fresno, California"
    assert docs[0].text.startswith("Fresno ist eine Stadt") and docs[0].content_hash
    by_id = {i.id: i for i in items}
    assert by_id["f1"].answers == ["etwa 500.000", "500.000"]  # duplicates dropped, order kept
    assert by_id["f1"].sources == ["xquad/fresno-california/0"]
    assert by_id["f2"].answers == [] and not by_id["f2"].answerable  # SQuAD 2.0 impossible → abstain
    assert by_id["f3"].sources == ["xquad/fresno-california/1"]
    assert by_id["g1"].sources == ["xquad/fresno-california-2/0"]
    items2, _ = load_squad(data=SQUAD, prefix="germanquad")
    assert items2[0].sources == ["germanquad/fresno-california/0"]


def test_jsonl_question_set(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"id": "a", "question": "Wie lange?", "answers": ["zwei Stunden"], "sources": ["doc1"]}\n\n'
        '{"question": "Wer gewann?", "answers": []}\n',
        encoding="utf-8",
    )
    items, docs = load_qa(path)
    assert docs is None
    assert items[0] == QAItem("a", "Wie lange?", ["zwei Stunden"], ["doc1"])
    assert items[1].id == "qa#3" and items[1].answers == [] and items[1].sources == []
    path.write_text('{"id": "a", "question": "Wie lange?"}\n', encoding="utf-8")
    with pytest.raises(RagError, match="answers"):
        load_qa(path)
    path.write_text('{"id": "a", "question": "Wie lange?", "answers": []}\nkein json\n', encoding="utf-8")
    with pytest.raises(RagError, match="Zeile 2"):
        load_qa(path)
    path.write_text('{"id": "a", "question": "Wie lange?", "answers": [{"text": " 2 h "}, "2 h"]}\n', encoding="utf-8")
    assert load_qa(path)[0][0].answers == ["2 h"]
    other = tmp_path / "other.json"
    other.write_text('{"questions": []}', encoding="utf-8")
    with pytest.raises(RagError, match="SQuAD"):
        load_qa(other)


# ---------------------------------------------------------------- distractors


def test_10kgnad_csv_with_quotes(tmp_path):
    path = tmp_path / "10kGNAD-mini.csv"
    path.write_text(
        "Wirtschaft;'Die Gewerkschaft lanciert den \"All-in-Rechner\" für Angestellte. Wien – Mehr Transparenz; sagt sie.'\n"
        "Sport;'Rapid gewinnt das Derby mit drei Toren. Der Trainer sagte: ''Wir waren besser.'''\n"
        "Panorama;'Mehrzeilig: erste Zeile des Artikels hier.\nZweite Zeile.'\n"
        "Kultur;'Wird wegen des Limits nicht gelesen.'\n",
        encoding="utf-8",
    )
    docs = load_distractors(path, limit=3)
    assert [d.id for d in docs] == ["10kgnad/1", "10kgnad/2", "10kgnad/3"]
    assert docs[0].text == 'Die Gewerkschaft lanciert den "All-in-Rechner" für Angestellte. Wien – Mehr Transparenz; sagt sie.'
    assert docs[0].title == 'Die Gewerkschaft lanciert den "All-in-Rechner" für Angestellte.'
    assert docs[1].text.endswith("Der Trainer sagte: 'Wir waren besser.'")
    assert docs[2].text == "Mehrzeilig: erste Zeile des Artikels hier.\nZweite Zeile."
    assert all(d.content_hash and d.source.startswith("10kGNAD-mini.csv#") for d in docs)
    assert len(load_distractors(path)) == 4


def test_distractor_folder_ids_are_prefixed(tmp_path):
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "a.txt").write_text("Ein Artikel über das Wetter in Wien am Dienstag.", encoding="utf-8")
    (folder / "b.txt").write_text("Ein Artikel über Fußball in Graz am Samstag.", encoding="utf-8")
    docs = load_distractors(folder, limit=1)
    assert [d.id for d in docs] == ["extra/a"]


# ---------------------------------------------------------------- the cached eval index (fake embedder)


def test_eval_index_is_cached_by_content(tmp_path):
    _, docs = load_squad(data=SQUAD)
    fake = FakeEmbedder()
    idx = build_eval_index(docs, tmp_path / "cache", embedder=fake)
    assert set(idx.documents) == {d.id for d in docs}
    first = fake.embedded
    again = build_eval_index(docs, tmp_path / "cache", embedder=fake)
    assert again.root == idx.root and fake.embedded == first and not again.last_build.wrote
    # Other documents → another index folder, but the shared embedding cache spares re-embedding.
    more = build_eval_index(docs[:2], tmp_path / "cache", embedder=fake)
    assert more.root != idx.root and fake.embedded == first
    assert (tmp_path / "cache" / "embcache.sqlite").is_file()


def test_evaluate_runs_on_a_real_index(tmp_path):
    items, docs = load_squad(data=SQUAD)
    idx = build_eval_index(docs, tmp_path / "cache", embedder=FakeEmbedder())
    results = run_questions(items, idx, k=3, mode="bm25")
    by_id = {r.item.id: r for r in results}
    # BM25 finds each paragraph by the question's words; "Was?" has no content word to find.
    assert by_id["f1"].retrieved[0] == "squad/fresno-california/0"
    assert by_id["f3"].retrieved[0] == "squad/fresno-california/1"
    assert by_id["g1"].retrieved == []
    # Quotes are cut from the indexed articles.
    for r in results:
        for p in r.passages:
            assert p["text"] in idx.documents[p["doc_id"]].text
    m = compute_metrics(results, k=3, mode="bm25")
    assert m["questions"] == 4 and m["answerable"] == 3 and m["unanswerable"] == 1
    assert m["retrieval_source_recall_at_k"] == pytest.approx(2 / 3)
    assert m["latency_p50_ms"] > 0


# ---------------------------------------------------------------- the command (real model)


@pytest.mark.slow
def test_eval_command_on_seed_questions(tmp_path):
    from typer.testing import CliRunner

    from rag.cli import app

    runner = CliRunner()
    cache = tmp_path / "cache"
    args = ["eval", str(SEED_QA), "--corpus", str(ROOT / "corpus"), "--cache", str(cache)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "MRR" in res.stdout and "abstention" in res.stdout

    fails = tmp_path / "failures.jsonl"
    res = runner.invoke(app, [*args, "--retriever", "bm25", "--json", "--failures", str(fails)])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1  # the second run reused the index
    assert (m["questions"], m["answerable"], m["unanswerable"], m["mode"]) == (20, 19, 1, "bm25")
    # Below the README's bm25 column (89.5 / 94.7 / 100 %, abstains on the one unanswerable question)
    # with a margin for one question's worth of drift.
    assert m["answer_in_top1"] >= 0.84 and m["answer_in_top3"] >= 0.89 and m["source_recall_at_k"] >= 0.94
    assert m["answer_in_top1"] <= m["answer_in_top3"] <= m["answer_in_top5"]
    # The unanswerable seed question is the least sure, but not abstained on (README, Quality).
    assert m["abstention_recall"] is not None and m["wrongly_abstained"] <= 1
    assert not math.isnan(m["latency_p50_ms"])
    recs = [json.loads(line) for line in fails.read_text(encoding="utf-8").splitlines()]
    # Every answerable question without the answer in its first quote is listed, with its reasons.
    assert len(recs) >= round((1 - m["answer_in_top1"]) * m["answerable"])
    for rec in recs:
        assert rec["reasons"] and "question" in rec and "returned" in rec


def test_run_eval_end_to_end_with_fake_embedder(tmp_path):
    from rag.evaluation import run_eval

    qa = tmp_path / "xquad-mini.json"
    qa.write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    csv_path = tmp_path / "10kGNAD-mini.csv"
    csv_path.write_text("Sport;'Rapid gewinnt das Derby mit drei Toren in Wien.'\nKultur;'Die Oper zeigt Mozart.'\n", encoding="utf-8")
    notes: list[str] = []
    fails = tmp_path / "fails.jsonl"
    out = run_eval(qa, distractors=csv_path, distractors_limit=1, mode="bm25", k=3, failures_path=fails,
                   cache_dir=tmp_path / "cache", as_json=True, echo=notes.append, embedder=FakeEmbedder())
    m = json.loads(out)
    assert m["documents"] == 4 and m["questions"] == 4 and m["mode"] == "bm25"
    assert m["answer_in_top5"] is None and m["abstention_recall"] is not None
    assert any("Fehlschläge" in n for n in notes) and fails.exists()
    table = run_eval(qa, distractors=csv_path, distractors_limit=1, cache_dir=tmp_path / "cache", embedder=FakeEmbedder())
    assert "xquad-mini.json" in table and "top-1" in table


def test_all_retrievers_give_one_comparison_table_on_one_index(tmp_path):
    from rag.evaluation import run_eval

    qa = tmp_path / "xquad-mini.json"
    qa.write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    kw = dict(mode="all", k=3, cache_dir=tmp_path / "cache", embedder=FakeEmbedder())
    by_mode = json.loads(run_eval(qa, as_json=True, failures_path=tmp_path / "f.jsonl", **kw))
    assert list(by_mode) == ["hybrid", "dense", "bm25"]
    assert all(m["questions"] == 4 and m["mode"] == mode for mode, m in by_mode.items())
    assert sorted(p.name for p in tmp_path.glob("f.*.jsonl")) == ["f.bm25.jsonl", "f.dense.jsonl", "f.hybrid.jsonl"]
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1
    table = run_eval(qa, **kw).splitlines()
    assert table[2] == "| metric | hybrid | dense | bm25 |"
    top1 = next(line for line in table if line.startswith("| answer in top-1 quote |"))
    assert top1.count("%") == 3


def test_answer_phrase_is_scored_apart_from_the_highlighted_sentence():
    from types import SimpleNamespace

    sentence = "Die Panthers gaben nur 308 Punkte ab."
    # highlight = the whole sentence (holds the answer); the answering phrase inside it is wrong
    p = SimpleNamespace(text=sentence, doc_id="a", title="a", highlighted=sentence, answer_text="Panthers", score=1.0, start=0,
                        end=len(sentence))
    idx = StubIndex({"Wie viele Punkte?": Answer("Wie viele Punkte?", [p], False, 0.9)})
    item = QAItem("p1", "Wie viele Punkte?", ["308"], ["a"])
    m = evaluate([item], idx, k=5)
    assert m["highlight_accuracy"] == 1.0 and m["answer_phrase_accuracy"] == 0.0
    assert "answer phrase" in format_metrics(m)
    rec = failures(run_questions([item], idx, k=5))
    assert rec[0]["reasons"] == ["answer_phrase_miss"] and rec[0]["returned"][0]["answer_text"] == "Panthers"


def test_risk_coverage_answers_the_most_confident_questions_first_and_counts_withheld_quotes():
    from rag.evaluation import risk_coverage

    # Ten answerable questions, the surest five right: answering 50 % of them is always right.
    conf = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    right = [True] * 5 + [False] * 5
    rc = risk_coverage(conf, right, (1.0, 0.5))
    assert rc == {"100%": 0.5, "50%": 1.0}
    assert risk_coverage([], []) == {}
    # An abstention counts with the quote it withheld: right here, so 100 % coverage is 2/2.
    items = [QAItem("a", "Wie lange?", ["zwei Stunden"], ["a"]), QAItem("b", "Wer?", ["Sullivan"], ["b"])]
    answers = {
        "Wie lange?": Answer("Wie lange?", [P("a", "Es dauerte zwei Stunden.", "zwei Stunden")], False, 0.9),
        "Wer?": Answer("Wer?", [], True, 0.1, withheld=[P("b", "Es sprach Sullivan.", "Sullivan")]),
    }
    m = evaluate(items, StubIndex(answers), k=3)
    assert m["risk_coverage"]["100%"] == 1.0 and m["answer_in_top1"] == 0.5 and m["wrongly_abstained"] == 1


def test_several_question_files_are_asked_together_and_their_ids_must_differ(tmp_path):
    from rag.evaluation import run_eval

    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    one.write_text(json.dumps({"id": "a", "question": "Wie lange dauerte der Gipfel?", "answers": ["zwei Stunden"]}) + "\n")
    two.write_text(json.dumps({"id": "b", "question": "Wer gewann die WM 2014?", "answers": []}) + "\n")
    kw = dict(corpus=[ROOT / "corpus"], cache_dir=tmp_path / "cache", embedder=FakeEmbedder(), as_json=True)
    m = json.loads(run_eval([one, two], config=Config(reader="heuristic"), **kw))
    assert (m["questions"], m["answerable"], m["unanswerable"]) == (2, 1, 1) and "one.jsonl + " in m["file"]
    two.write_text(json.dumps({"id": "a", "question": "Wer?", "answers": []}) + "\n")
    with pytest.raises(RagError, match="Frage-ID a"):
        run_eval([one, two], **kw)
