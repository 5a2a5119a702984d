"""The fine-tuned student: a cross-encoder that reads query and passage together and is trained end to end
on the teacher's grades with sentence-transformers' ``CrossEncoderTrainer`` and its losses.

Unlike the frozen bi-encoder student (:mod:`qrelkit.students.encoder`), every weight learns what makes a passage
*answer* a query rather than share its topic. It starts from the offline all-MiniLM-L6-v2 weights (a new
one-logit head) or any Hugging Face model name or folder, optionally after a first stage on synthetic
queries (:func:`synthetic_stage_pairs`: each query's seed passage positive, BM25 neighbours negative).

The score is ``3 · sigmoid(logit)`` (a continuous 0–3 grade estimate); grades come from ordinal thresholds
fitted so that the student's grade shares on the teacher's training pairs equal the teacher's.

>>> student = distill_cross_encoder(pairs, teacher, epochs=1)            # doctest: +SKIP
>>> student.save("ce-student/")                                           # doctest: +SKIP
>>> scores, grades = CrossEncoderStudent.load("ce-student/").predict(["query"], ["passage"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QrelkitError
from ..io import Qrels, folder_replaced
from ..models import MINILM_ALIAS, resolve_encoder
from ..records import GRADES, Pair
from ..tables import markdown_table
from .cross_encoder_onnx import COMPANION
from .encoder import Student
from .grading import ThresholdGrader, clip_for_tokens, distribution_thresholds, strip_query_echoes
from .stacking import fit_stack_head, stack_scores
from .training import default_device, run_trainer

log = logging.getLogger("qrelkit")

KIND = "cross-encoder"
LOSSES = ("bce", "mse", "listnet", "lambda")
LIST_SIZE = 8  # documents per query in one listwise training row


class CrossEncoderStudent(ThresholdGrader):
    """A cross-encoder relevance labeler; :meth:`save` / :meth:`load` a folder.

    ``model`` is a ``sentence_transformers.CrossEncoder`` with one output logit. A stacked student (see
    :meth:`stack`) also holds ``companion``, a frozen bi-encoder :class:`~qrelkit.students.encoder.Student`, and
    ``stack_head``, a ridge over its own score and the companion's features (:mod:`qrelkit.students.stacking`).
    """

    kind = KIND

    def __init__(
        self,
        model: Any,
        card: dict[str, Any],
        thresholds: list[float] | None = None,
        *,
        companion: Student | None = None,
        stack_head: dict[str, Any] | None = None,
    ):
        if (companion is None) != (stack_head is None):
            raise QrelkitError("a stacked cross-encoder needs both its frozen companion and its stacking head")
        self.model = model
        self.card = card
        self.thresholds = thresholds
        self.companion = companion
        self.stack_head = stack_head

    # ------------------------------------------------------------ construction

    @classmethod
    def from_base(
        cls, base: str = MINILM_ALIAS, *, max_length: int = 256, device: str | None = None, strip_echoes: bool = True
    ) -> CrossEncoderStudent:
        """A fresh cross-encoder over ``base`` (the MiniLM alias, an HF name or a folder; a folder written by
        :meth:`save` continues from that student's weights)."""
        from sentence_transformers import CrossEncoder

        path = Path(base) / "model" if (Path(base) / "student.json").exists() else resolve_encoder(base)
        model = CrossEncoder(str(path), num_labels=1, max_length=max_length, device=device or default_device())
        return cls(model, {"kind": KIND, "base": base, "max_length": max_length, "strip_query_echoes": strip_echoes})

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, runtime: str = "torch") -> CrossEncoderStudent:
        """Load a folder written by :meth:`save`; ``runtime`` ``onnx``, ``onnx-int8`` or ``onnx-int8-mixed`` runs
        the exports of :func:`qrelkit.students.cross_encoder_onnx.export_cross_encoder` (``qrelkit export``)."""
        from .cross_encoder_onnx import CE_ONNX_FILES, OnnxPairScorer
        from .onnx import unknown_runtime_error

        p = Path(path)
        meta = json.loads((p / "student.json").read_text())
        if meta.get("kind") != KIND:
            raise QrelkitError(f"{p}: a {meta.get('kind')!r} student, not a cross-encoder")
        if runtime != "torch" and runtime not in CE_ONNX_FILES:
            raise unknown_runtime_error(runtime)
        card = json.loads((p / "card.json").read_text())
        max_length = int(card.get("max_length", 256))
        model: Any
        if runtime == "torch":
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(str(p / "model"), max_length=max_length, device=device or "cpu")
        else:
            from .onnx import onnx_tokenizer

            model = OnnxPairScorer(p / CE_ONNX_FILES[runtime], onnx_tokenizer(p / "model"), max_length=max_length)
        head = meta.get("stack")
        companion = Student.load(p / COMPANION, device=device or "cpu", runtime=runtime) if head else None
        return cls(model, {**card, "runtime": runtime}, meta.get("thresholds"), companion=companion, stack_head=head)

    def save(self, path: str | Path) -> None:
        meta = {"kind": KIND, "thresholds": self.thresholds, "stack": self.stack_head}
        with folder_replaced(path) as tmp:
            self.model.save_pretrained(str(tmp / "model"))
            if self.companion is not None:
                self.companion.save(tmp / COMPANION)
            (tmp / "student.json").write_text(json.dumps(meta, indent=1))
            (tmp / "card.json").write_text(json.dumps(self.card, indent=1, default=str))
            (tmp / "README.md").write_text(_model_card(self.card, self.thresholds))

    # ------------------------------------------------------------ prediction

    def clear_cache(self) -> None:
        """Forget the frozen companion's cached embeddings (the cross-encoder itself caches nothing)."""
        if self.companion is not None:
            self.companion.clear_cache()

    def scores(
        self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64, features: np.ndarray | None = None
    ) -> np.ndarray:
        """A continuous 0–3 grade estimate per pair: 3 · sigmoid(logit), or for a stacked student the stacking
        head over that and the companion's features (``features``: those of the pairs when already computed)."""
        own = self.own_scores(queries, docs, batch_size=batch_size)
        if self.stack_head is None or not len(own):
            return own
        if features is None:
            if self.companion is None:
                return own
            features = self.companion.features(queries, docs, batch_size=batch_size)
        return stack_scores(self.stack_head, np.column_stack([own, features]))

    def own_scores(self, queries: Sequence[str], docs: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """The cross-encoder's own 0–3 estimate, 3 · sigmoid(logit), stacked or not."""
        if not queries:
            return np.zeros(0, dtype=np.float64)
        docs = self._read(queries, docs)
        probs = self.model.predict(
            list(zip(queries, docs, strict=True)), batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return 3.0 * np.asarray(probs, dtype=np.float64).reshape(-1)

    def stack(
        self,
        pairs: Sequence[Pair],
        grades: Sequence[int],
        *,
        companion: Student | None = None,
        targets: Sequence[float] | None = None,
        features: np.ndarray | None = None,
        own: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Become a stacked student: fit a ridge over [own score, frozen ``companion``'s features] (default: the
        frozen all-MiniLM-L6-v2, reading passages as this student does) to ``targets`` (default ``grades``) on
        ``pairs``, then the grade thresholds on the head's scores there. ``pairs`` must be pairs this student never
        trained on (e.g. held-out queries): on its training pairs its own score looks more certain than it is.
        ``features`` / ``own``: the companion's :meth:`~qrelkit.students.encoder.Student.features` and this
        student's :meth:`own_scores` of ``pairs`` when already computed."""
        if len(pairs) != len(grades) or len(pairs) < 10:
            raise QrelkitError(f"stacking needs at least 10 held-out pairs with one grade each (got {len(pairs)})")
        if self.stack_head is not None:
            raise QrelkitError("this student is stacked already")
        companion = companion or Student.from_base(strip_echoes=bool(self.card.get("strip_query_echoes")))
        queries, docs = [p.query for p in pairs], [p.text for p in pairs]
        if features is None:
            features = companion.features(queries, docs)
        x = np.column_stack([self.own_scores(queries, docs) if own is None else own, features])
        y = np.asarray(targets if targets is not None else grades, dtype=np.float64)
        head = fit_stack_head(x, y, features=("cross_encoder", *companion.feature_names))
        self.companion, self.stack_head = companion, head
        self.thresholds = distribution_thresholds(stack_scores(head, x), np.asarray(grades))
        stats = {
            "companion": companion.card.get("base"),
            "held_out_pairs": len(pairs),
            "held_out_queries": len({p.qid for p in pairs}),
            "coef": dict(zip(head["features"], np.round(head["coef"], 4).tolist(), strict=True)),
        }
        self.card["stack"] = stats
        return stats

    def _read(self, queries: Sequence[str], docs: Sequence[str]) -> list[str]:
        """The passages as the student reads them, in training and grading: without copies of the query when
        trained with the keyword-stuffing defence (:func:`qrelkit.students.grading.strip_query_echoes`), then
        clipped to twice max_length words, which hold every token it reads, whatever the passage's length."""
        if self.card.get("strip_query_echoes"):
            docs = [strip_query_echoes(q, d) for q, d in zip(queries, docs, strict=True)]
        max_length = int(self.card.get("max_length", 256))
        return [clip_for_tokens(d, max_length) for d in docs]

    def calibrate(self, pairs: Sequence[Pair], grades: Sequence[int]) -> None:
        """Fit the grade thresholds so that the student's grade shares on ``pairs`` equal ``grades``' shares."""
        scores = self.scores([p.query for p in pairs], [p.text for p in pairs])
        self.thresholds = distribution_thresholds(scores, np.asarray(grades))

    # ------------------------------------------------------------ training

    def fit(
        self,
        pairs: Sequence[Pair],
        targets: Sequence[float],
        *,
        loss: str = "bce",
        epochs: float = 1.0,
        batch_size: int = 32,
        learning_rate: float = 2e-5,
        warmup_ratio: float = 0.1,
        checkpoint_dir: str | Path | None = None,
        time_budget_s: float | None = None,
        seed: int = 0,
        bf16: bool | None = None,
    ) -> dict[str, Any]:
        """Train on ``pairs`` with ``targets`` (0–3 grades or expected grades): ``bce`` / ``mse`` pointwise on
        target/3, ``listnet`` / ``lambda`` listwise over up to :data:`LIST_SIZE` documents of a query.

        ``checkpoint_dir`` makes the run resumable: it saves every few hundred steps and a rerun with the same
        data continues from the last checkpoint. ``time_budget_s`` stops training (after saving) once spent.
        Returns training stats (pairs, steps, seconds, stopped early)."""
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

        if loss not in LOSSES:
            raise QrelkitError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if len(pairs) != len(targets) or not pairs:
            raise QrelkitError(f"need as many targets as pairs (got {len(targets)} for {len(pairs)}), at least one")
        read = self._read([p.query for p in pairs], [p.text for p in pairs])
        pairs = [p.model_copy(update={"text": t}) if t != p.text else p for p, t in zip(pairs, read, strict=True)]
        dataset = _dataset(pairs, targets, loss, seed)

        def make_trainer(args: Any, callbacks: Any) -> Any:
            objective = _loss(self.model, loss)
            return CrossEncoderTrainer(
                model=self.model, args=args, train_dataset=dataset, loss=objective, callbacks=callbacks
            )

        stats = run_trainer(
            make_trainer,
            CrossEncoderTrainingArguments,
            checkpoint_dir=checkpoint_dir,
            time_budget_s=time_budget_s,
            use_cpu=self.model.device.type == "cpu",
            bf16=bf16,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size if loss in ("bce", "mse") else max(1, batch_size // LIST_SIZE),
            learning_rate=learning_rate,
            warmup_steps=warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
            seed=seed,
        )
        return {"loss": loss, "train_rows": len(dataset), "pairs": len(pairs), "epochs": epochs, **stats}

    def pretrain(
        self,
        pairs: Sequence[Pair],
        targets: Sequence[float],
        *,
        batch_size: int = 32,
        learning_rate: float = 2e-5,
        checkpoint_dir: str | Path | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Stage 1, before the teacher's grades: one epoch of BCE on synthetic pairs (:func:`synthetic_stage_pairs`,
        seed passages 3, BM25 neighbours 0), recorded in the card as ``stage1``. No teacher label is used."""
        if not pairs:
            raise QrelkitError("no synthetic query's seed document is in the corpus: nothing to pre-train on")
        stats = self.fit(
            pairs,
            targets,
            loss="bce",
            epochs=1,
            batch_size=batch_size,
            learning_rate=learning_rate,
            checkpoint_dir=checkpoint_dir,
            seed=seed,
        )
        self.card["stage1"] = {"synthetic_queries": len({p.qid for p in pairs}), **stats}
        return stats


def _loss(model: Any, name: str) -> Any:
    from sentence_transformers.cross_encoder import losses

    if name == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if name == "mse":
        import torch

        return losses.MSELoss(model, activation_fn=torch.nn.Sigmoid())
    # mini_batch_size -1: a step's lists in one forward pass. The default (the number of lists, e.g. 2; 0 reads as
    # the default) cut a step's 16 pairs into 8 passes of 2: several times slower on CPU
    if name == "listnet":
        return losses.ListNetLoss(model, mini_batch_size=-1)
    return losses.LambdaLoss(model, mini_batch_size=-1)


def _dataset(pairs: Sequence[Pair], targets: Sequence[float], loss: str, seed: int) -> Any:
    """Pointwise rows (query, doc, target/3) or listwise rows (query, docs, targets) in a ``datasets.Dataset``."""
    from datasets import Dataset

    rng = random.Random(seed)
    if loss in ("bce", "mse"):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        return Dataset.from_dict(
            {
                "query": [pairs[i].query for i in order],
                "doc": [pairs[i].text for i in order],
                "label": [float(targets[i]) / 3.0 for i in order],
            }
        )
    by_query: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        by_query[p.qid].append(i)
    rows: list[tuple[str, list[str], list[float]]] = []
    for idx in by_query.values():
        rng.shuffle(idx)
        for start in range(0, len(idx), LIST_SIZE):
            chunk = idx[start : start + LIST_SIZE]
            if len(chunk) > 1:
                rows.append((pairs[chunk[0]].query, [pairs[i].text for i in chunk], [float(targets[i]) for i in chunk]))
    rng.shuffle(rows)
    columns = {"query": [r[0] for r in rows], "docs": [r[1] for r in rows], "labels": [r[2] for r in rows]}
    return Dataset.from_dict(columns)


def synthetic_stage_pairs(
    queries: Sequence[tuple[str, str, str]],
    docs: dict[str, str],
    *,
    negatives: int = 3,
    rank_range: tuple[int, int] = (20, 60),
    n_random: int = 1,
    seed: int = 0,
    round_trip: int | None = None,
) -> tuple[list[Pair], list[float]]:
    """Stage-1 training pairs from synthetic ``queries`` (qid, text, seed doc id) over ``docs`` (id → text):
    the seed passage graded 3, ``negatives`` BM25 neighbours drawn from ranks ``rank_range`` (near the topic,
    but far enough down that few are unlabelled positives) and ``n_random`` random passages graded 0.

    ``round_trip`` keeps only the queries whose seed passage BM25 ranks within that many results (the round-trip
    filter of InPars and Promptagator): a query its own passage does not answer teaches the wrong positive."""
    from ..mine import BM25Index
    from ..records import Document

    doc_ids = list(docs)
    index = BM25Index([Document(doc_id=d, text=docs[d]) for d in doc_ids])
    depth = max(rank_range[1], round_trip or 0)
    idx, _ = index.search([q for _, q, _ in queries], k=min(depth, len(doc_ids)))
    rng = random.Random(seed)
    pairs: list[Pair] = []
    targets: list[float] = []
    for (qid, text, seed_id), row in zip(queries, idx, strict=True):
        if seed_id not in docs:
            continue
        if round_trip is not None and seed_id not in {doc_ids[i] for i in row[:round_trip]}:
            continue
        row = row[: rank_range[1]]
        band = [doc_ids[i] for i in row[rank_range[0] :] if doc_ids[i] != seed_id]
        chosen = rng.sample(band, min(negatives, len(band))) + rng.sample(doc_ids, n_random)
        pairs.append(Pair(qid=qid, query=text, doc_id=seed_id, text=docs[seed_id], source="seed"))
        targets.append(3.0)
        for d in chosen:
            if d != seed_id:
                pairs.append(Pair(qid=qid, query=text, doc_id=d, text=docs[d], source="bm25"))
                targets.append(0.0)
    return pairs, targets


def distill_cross_encoder(
    pairs: Sequence[Pair],
    teacher: Qrels,
    *,
    soft: dict[tuple[str, str], float] | None = None,
    base: str = MINILM_ALIAS,
    loss: str = "bce",
    epochs: float = 1.0,
    batch_size: int = 32,
    learning_rate: float = 2e-5,
    max_length: int = 256,
    max_pairs: int | None = None,
    checkpoint_dir: str | Path | None = None,
    time_budget_s: float | None = None,
    seed: int = 0,
    device: str | None = None,
    card: dict[str, Any] | None = None,
    strip_echoes: bool = True,
    pretrain_queries: Sequence[tuple[str, str, str]] | None = None,
    corpus: Mapping[str, str] | None = None,
    stack_held_out: float = 0.0,
) -> CrossEncoderStudent:
    """Fine-tune a :class:`CrossEncoderStudent` on the pairs the teacher graded (the expected grade from
    ``soft`` where given), then fit its grade thresholds to the teacher's grade shares on those pairs.

    ``max_pairs`` bounds the training set (a query-stratified sample, so every query keeps some pairs);
    ``strip_echoes`` (the keyword-stuffing defence) has the student read passages without copies of the query.
    ``pretrain_queries`` (qid, text, seed doc id), e.g. what ``qrelkit synth`` wrote over ``corpus`` (doc id →
    text), add a first stage: one epoch of BCE with each seed passage as positive and BM25 neighbours as
    negatives (:func:`synthetic_stage_pairs`), before the teacher's grades; ``time_budget_s`` bounds the second.

    ``stack_held_out`` (a share of the queries, e.g. 0.25) keeps those queries' pairs out of training and stacks the
    student on them with the frozen bi-encoder's features (:meth:`CrossEncoderStudent.stack`)."""
    from .targets import sample_by_query, split_by_query, teacher_targets

    labelled, grades, _ = teacher_targets(pairs, teacher)
    soft = soft or {}
    held: list[Pair] = []
    if stack_held_out:
        train, out = split_by_query(labelled, stack_held_out, seed)
        held, held_grades = [labelled[i] for i in out], grades[out]
        labelled, grades = [labelled[i] for i in train], grades[train]
    if max_pairs is not None and len(labelled) > max_pairs:
        keep = sorted(sample_by_query(labelled, max_pairs, seed))
        labelled, grades = [labelled[i] for i in keep], grades[keep]
    targets = [soft.get((p.qid, p.doc_id), float(g)) for p, g in zip(labelled, grades, strict=True)]
    student = CrossEncoderStudent.from_base(base, max_length=max_length, device=device, strip_echoes=strip_echoes)
    if pretrain_queries:
        if not corpus:
            raise QrelkitError("pre-training on synthetic queries needs the corpus their seed documents come from")
        stage_pairs, stage_targets = synthetic_stage_pairs(pretrain_queries, dict(corpus), seed=seed)
        student.pretrain(
            stage_pairs,
            stage_targets,
            batch_size=batch_size,
            learning_rate=learning_rate,
            checkpoint_dir=Path(checkpoint_dir) / "stage1" if checkpoint_dir else None,
            seed=seed,
        )
    stats = student.fit(
        labelled,
        targets,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        checkpoint_dir=checkpoint_dir,
        time_budget_s=time_budget_s,
        seed=seed,
    )
    if held:
        held_targets = [soft.get((p.qid, p.doc_id), float(g)) for p, g in zip(held, held_grades, strict=True)]
        student.stack(held, held_grades.tolist(), targets=held_targets)
    else:
        student.calibrate(labelled, grades.tolist())
    student.card.update(card or {})
    student.card.update(
        {
            "train_pairs": len(labelled),
            "train_queries": len({p.qid for p in labelled}),
            "target": "teacher expected grade / 3" if soft else "teacher grade / 3",
            "training": stats,
            "teacher_grade_counts": {g: int((grades == g).sum()) for g in GRADES},
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return student


def _model_card(card: dict[str, Any], thresholds: list[float] | None) -> str:
    lines = [
        "# qrelkit cross-encoder student",
        "",
        "A relevance labeler (grades 0–3): a cross-encoder fine-tuned on an LLM teacher's grades with qrelkit.",
        "",
        "```python",
        "from qrelkit.students import load_student",
        'student = load_student("this/folder")',
        'scores, grades = student.predict(["query"], ["document text"])',
        "```",
        "",
        markdown_table(["field", "value"], ([k, v] for k, v in card.items() if k != "kind")),
    ]
    lines += ["", f"Score: 3 · sigmoid(logit). Grade thresholds: {thresholds}", ""]
    return "\n".join(lines)
