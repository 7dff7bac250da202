"""The answer stage: quotes around the answering sentences, the answering phrase marked, agreement
across articles, abstention when the corpus does not say. One module per step:

- candidates.py  which sentences are considered (`Candidate`) and their features
- reading.py     where in a sentence the answer is (`Reader`; `HeuristicReader`: the typed phrase)
- neural.py      the model reader (`ModelReader`: the trained reader or a user's model) and the
                 `CombinedScorer` that adds its margin to the rules' score (the defaults)
- scoring.py     how sentences are ranked (`SentenceScorer`; `HeuristicScorer`: the rules)
- phrases.py     German typed phrases (durations, dates, numbers, places, names)
- evidence.py    whether to abstain, apart from the ranking
- agreement.py   which articles say the same, which say otherwise
- quotes.py      verbatim quotes cut at sentence boundaries
- pipeline.py    `answer()`: the steps in order

Scorers and readers are chosen by name in `Config.scorer` / `Config.reader` from the registries
`scoring.SCORERS` / `reading.READERS`.
"""
from .agreement import Agreement, agreement_of, comparable, corroborating, same_answer
from .candidates import Candidate
from .evidence import ABSTAIN_MESSAGE, Evidence, abstains, evidence, weigh
from .phrases import find_phrase, phrase_value, question_type
from .pipeline import Answer, answer
from .quotes import quote_span
from .reading import READERS, HeuristicReader, Reader, Reading, make_reader
from .scoring import SCORERS, HeuristicScorer, SentenceScorer, make_scorer

__all__ = [
    "Answer", "Agreement", "Candidate", "Reading", "Reader", "SentenceScorer", "HeuristicReader", "HeuristicScorer",
    "READERS", "SCORERS", "make_reader", "make_scorer", "answer", "evidence", "abstains", "weigh", "Evidence", "ABSTAIN_MESSAGE",
    "agreement_of", "comparable", "corroborating", "same_answer", "find_phrase", "phrase_value", "question_type",
    "quote_span",
]
