"""Smoke test of `rag bench` on a few seed articles: every figure is there and positive (no timing goals)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import SEEDS
from rag.bench import FIELDS, HEADER_KEYS, format_report
from rag.cli import app


@pytest.mark.slow
def test_bench_reports_every_figure():
    result = CliRunner().invoke(app, ["bench", "--corpus", str(SEEDS), "--limit", "3", "--queries", "3", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert list(r) == list(FIELDS)
    assert r["articles"] == 3
    assert r["backend"] in ("lean", "onnx-int8", "sentence-transformers")
    for key, value in r.items():
        if key == "backend":
            continue
        assert isinstance(value, (int, float)), key
        if key not in ("build_overhead", "build_overhead_cpu", "load_avg_1m"):  # a ratio may be ≤ 0 in noise
            assert value > 0, key
    report = format_report(r)
    for key, (label, *_) in FIELDS.items():
        assert key in HEADER_KEYS or label.strip() in report, key


def test_bench_command_missing_corpus(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--corpus", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "Korpus nicht gefunden" in result.output
