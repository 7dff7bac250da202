# Set-up is part of every target: a fresh machine needs nothing but Python 3 and make.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: setup serve lint test test-fast build chromium bench bench-peers eval train-reader reader-curve clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the CPU build on local disk; any other request pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

serve: setup
	$(VENV)/bin/rag serve

build: setup
	$(VENV)/bin/rag build

lint: setup
	$(VENV)/bin/ruff check rag ui tests bench

test: setup chromium lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

# The README's quality tables: the trained reader against the rules on the news dev split (news-qa +
# news-qa-2, against all 1,028 articles), XQuAD-de dev among 300 news articles and the seed questions
# (each with its risk–coverage table); then every retriever on XQuAD-de among news (data in eval/,
# eval/README.md); then the chats (first turns / follow-ups, with and without history) and the news
# and seed questions asked alone and after a random unrelated chat.
eval: setup
	$(VENV)/bin/rag eval eval/seed-qa.jsonl --reader all
	$(VENV)/bin/rag eval eval/news-qa.jsonl eval/news-qa-2.jsonl --split dev --reader all
	$(VENV)/bin/rag eval eval/xquad-de-dev.json --split dev --distractors eval/data/10kGNAD-test.csv --distractors-limit 300 --reader all
	$(VENV)/bin/rag eval eval/xquad-de-dev.json --distractors eval/data/10kGNAD-test.csv --distractors-limit 300 --retriever all --reader heuristic
	$(VENV)/bin/rag eval eval/conversations-dev.jsonl
	$(VENV)/bin/rag eval eval/conversations-dev2.jsonl
	$(VENV)/bin/rag eval eval/news-qa.jsonl --split dev --after eval/conversations-dev.jsonl
	$(VENV)/bin/rag eval eval/seed-qa.jsonl --after eval/conversations-dev.jsonl

# Train the answer reader from eval/ (news-qa, news-qa-2 and XQuAD de/en/es, train split) into
# rag/reader/weights/: windows planned by the real answer stage over all 10kGNAD articles and the
# XQuAD paragraphs, shared-norm training of e5-small's top layers, then the combiner and the
# abstention threshold (README, The reader; ≈ 70 min on 2 cores). Same seed, same weights.
train-reader: setup
	$(VENV)/bin/rag train-reader

# The reader's learning curve (25 / 50 / 100 % of the news training articles), written to
# artifacts/curve/ (README, The reader).
reader-curve: setup
	$(PY) bench/reader_curve.py --shares 1.0 0.25 0.5 --epochs 1 --also news=0.25,epochs=2 --out artifacts/curve

bench: setup
	$(VENV)/bin/rag bench

# Haystack 2 and txtai on the same corpus and questions, in their own virtualenv (not project
# dependencies). torch first, as above: 2.13.0 is the CPU build on local disk.
bench-peers: setup
	test -x bench/.venv-peers/bin/python || python3 -m venv bench/.venv-peers
	test -f bench/.venv-peers/.installed-1 || { \
	  bench/.venv-peers/bin/python -m pip install -q --upgrade pip && \
	  bench/.venv-peers/bin/python -m pip install -q torch==2.13.0 && \
	  bench/.venv-peers/bin/python -m pip install -q haystack-ai==2.31.0 txtai==9.14.0 sentence-transformers==6.2.0 && \
	  touch bench/.venv-peers/.installed-1; }
	$(PY) bench/peers.py --peers-python bench/.venv-peers/bin/python

clean:
	rm -rf index/v-* index/CURRENT index/embcache.sqlite index/.lock .pytest_cache
