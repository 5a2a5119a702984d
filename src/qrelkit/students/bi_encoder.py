"""Fine-tuning the frozen student's encoder on the teacher's grades (sentence-transformers' trainer, CoSENT loss).

The bi-encoder starts where the frozen student is strong (its cosine already ranks passages by topic) and
learns from the teacher which of the on-topic passages answer: a fine-tuned encoder under the same features,
head and cut points as :class:`qrelkit.students.encoder.Student`, so it labels as fast and caches embeddings
the same way.

>>> tuned = fine_tune_encoder(Student.from_base(), pairs, grades, epochs=1)      # doctest: +SKIP
>>> student = distill(pairs, teacher, student=tuned)                               # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import QrelkitError
from ..records import Pair
from .encoder import Student
from .grading import strip_query_echoes
from .training import run_trainer


def fine_tune_encoder(
    student: Student,
    pairs: Sequence[Pair],
    grades: Sequence[float],
    *,
    epochs: float = 1.0,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    checkpoint_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
) -> Student:
    """A new :class:`Student` whose encoder is ``student``'s fine-tuned so that the cosine of query and passage
    orders pairs as the teacher's ``grades`` (0–3) do (``CoSENTLoss``: a ranking loss on cosine differences,
    so the scale of the cosine is free and only the order is taught). The head is left to :func:`distill`."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss

    if len(pairs) != len(grades) or not pairs:
        raise QrelkitError(f"need as many grades as pairs (got {len(grades)} for {len(pairs)}), at least one")
    model = student.encoder
    if not hasattr(model, "fit"):
        raise QrelkitError("only a torch (sentence-transformers) encoder can be fine-tuned, not an ONNX one")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    strip = bool(student.card.get("strip_query_echoes"))
    docs = [strip_query_echoes(p.query, p.text) if strip else p.text for p in pairs]
    dataset = Dataset.from_dict(
        {
            "sentence1": [pairs[i].query for i in order],
            "sentence2": [docs[i] for i in order],
            "score": [float(grades[i]) / 3.0 for i in order],
        }
    )

    def make_trainer(args: Any, callbacks: Any) -> Any:
        return SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=CoSENTLoss(model), callbacks=callbacks
        )

    stats = run_trainer(
        make_trainer,
        SentenceTransformerTrainingArguments,
        checkpoint_dir=checkpoint_dir,
        time_budget_s=time_budget_s,
        use_cpu=model.device.type == "cpu",
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=0.1,  # transformers 5: a float below 1 is a share of the steps
        seed=seed,
    )
    stats = {"loss": "CoSENT", "pairs": len(pairs), "epochs": epochs, **stats}
    return Student(model, head={}, card={**student.card, "fine_tuned": stats}, cache_size=student.cache_size)
