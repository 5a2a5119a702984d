"""qrelkit: distil an LLM relevance judge into a fast student labeler.

>>> from qrelkit import read_corpus, synthesize, mine_pairs, Judge, distill, label_pairs, evaluate_qrels
"""

from ._version import __version__
from .distill import distill
from .errors import InputError, QrelkitError
from .evaluate import agreement, evaluate_qrels
from .io import read_corpus, read_pairs, read_qrels, read_runs, write_qrels
from .judge import Judge, parse_grade
from .label import label_pairs
from .llm import get_llm
from .mine import BM25Index, mine_pairs
from .pipeline import run_pipeline
from .records import Document, Judgment, Pair, Query
from .students import Labeler, load_student
from .students.encoder import Student
from .students.targets import load_teacher
from .synth import synthesize
from .system_ranking import compare_system_rankings

__all__ = [
    "BM25Index",
    "Document",
    "InputError",
    "Judge",
    "Judgment",
    "Labeler",
    "Pair",
    "QrelkitError",
    "Query",
    "Student",
    "__version__",
    "agreement",
    "compare_system_rankings",
    "distill",
    "evaluate_qrels",
    "get_llm",
    "label_pairs",
    "load_student",
    "load_teacher",
    "mine_pairs",
    "parse_grade",
    "read_corpus",
    "read_pairs",
    "read_qrels",
    "read_runs",
    "run_pipeline",
    "synthesize",
    "write_qrels",
]
