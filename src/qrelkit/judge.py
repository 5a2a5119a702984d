"""Teacher judging: grade query–document pairs 0–3 with an LLM and a rubric prompt.

Local models and servers that return log-probabilities are read from the next-token distribution
over "0".."3" (the grade distribution, its argmax and expected grade are all recorded). Other servers
generate text, parsed strictly; an unparseable answer gets one repair request, then is a failure.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .errors import QrelkitError
from .io import atomic_write_text, judgments_file, sidecar, write_jsonl, write_qrels
from .llm import LLM, ResultCache, cache_key, get_llm, parse_spec
from .llm.base import ChoiceProbs, LogprobsUnavailable, redact
from .pricing import cost_usd, is_local, missing_price, price_of
from .progress import progress_bar
from .prompts import Prompt, load_prompt
from .records import GRADES, Judgment, Pair

log = logging.getLogger("qrelkit")

GRADE_TOKENS = [str(g) for g in GRADES]
LOW_MASS = 0.05
_STRICT = [
    re.compile(r"^\W*([0-3])\W*$"),
    re.compile(r"final grade\s*[:=]\s*([0-3])\b", re.IGNORECASE),
    re.compile(r'"grade"\s*:\s*"?([0-3])\b'),
]
REPAIR = "Your answer could not be read. Reply with one digit only: 0, 1, 2 or 3."


def parse_grade(text: str) -> int | None:
    """Read a grade from a reply: a lone digit, ``Final grade: N`` or JSON ``{"grade": N}``; else None."""
    for pattern in _STRICT:
        m = pattern.search(text.strip())
        if m:
            return int(m.group(1))
    return None


def truncate(text: str, max_chars: int) -> str:
    """Cut a document to ``max_chars`` at a word boundary (very long passages are usually boilerplate)."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    return cut[: cut.rfind(" ")] if " " in cut else cut


# A document that closes the passage tag itself could write text the model reads as ours.
_PASSAGE_TAG = re.compile(r"<\s*/?\s*passage\b[^>]*>", re.IGNORECASE)


def neutralise_delimiters(text: str) -> str:
    """Turn ``<passage>``/``</passage>`` tags inside an untrusted document into inert ``[passage]`` text."""
    return _PASSAGE_TAG.sub("[passage]", text)


def _from_probs(cp: ChoiceProbs) -> dict[str, Any]:
    """A judgment's fields from the model's probabilities of the grade tokens: the likeliest grade, the
    distribution and the expected grade."""
    best = max(GRADES, key=lambda g: cp.probs[g])
    return {
        "grade": best,
        "probs": [round(p, 6) for p in cp.probs],
        "expected": round(sum(g * p for g, p in zip(GRADES, cp.probs, strict=True)), 6),
        "mass": round(cp.mass, 6),
        "raw": GRADE_TOKENS[best],
        "tokens_in": cp.prompt_tokens,
        "tokens_out": cp.completion_tokens,
    }


def _setup_error(error: Exception) -> bool:
    """An error no pair can get past (bad prompt, context overflow, refused key): it fails the whole run. A model
    without logprobs is not one: its pairs are graded from generated text."""
    return isinstance(error, QrelkitError) and not isinstance(error, LogprobsUnavailable)


def _failed(error: Exception) -> dict[str, Any]:
    """A failed pair's fields; a setup error fails the whole run."""
    if _setup_error(error):
        raise error
    return {"grade": None, "error": f"{type(error).__name__}: {redact(str(error))}"[:500]}


class Judge:
    """Grades pairs with one LLM and one prompt; results are cached so reruns make no model calls.

    >>> judge = Judge("gguf:qwen2.5-coder-1.5b", cache="runs/cache.sqlite")   # doctest: +SKIP
    >>> judgments = judge.judge(pairs)                                      # doctest: +SKIP
    """

    def __init__(
        self,
        llm: str | LLM,
        *,
        prompt: str | Prompt = "judge-rubric",
        cache: str | Path | ResultCache | None = None,
        max_chars: int = 1200,
        concurrency: int = 1,
        batch_size: int | None = None,
        use_logprobs: bool = True,
        rpm: float | None = None,
        tpm: float | None = None,
        prices: dict[str, tuple[float, float]] | None = None,
    ):
        """``concurrency``: requests in flight (HTTP backends); ``batch_size``: pairs per forward pass (the
        transformers backend, which scores many prompts at once; default: its ``scoring_batch``, 32 on a GPU and 1
        on CPU); ``rpm`` / ``tpm`` cap requests and tokens per minute on HTTP backends; ``prices`` (USD per 1M
        input/output tokens by model name, see :mod:`qrelkit.pricing`) prices the progress bar's running cost."""
        self.llm = get_llm(llm) if isinstance(llm, str) else llm
        self.prompt = load_prompt(prompt) if isinstance(prompt, str) else prompt
        self.cache = ResultCache(cache) if isinstance(cache, str | Path) else cache
        self.max_chars = max_chars
        # Local models run one call at a time; HTTP servers take several in flight.
        self.concurrency = concurrency if self.llm.parallel_requests else 1
        self.batch_size = batch_size or self.llm.scoring_batch
        self.use_logprobs = use_logprobs
        self._no_logprobs = 0
        self._lock = threading.Lock()  # requests run in threads (--concurrency)
        self.prices = prices
        if rpm or tpm:
            self.llm.limit_rate(rpm, tpm)

    def messages(self, pair: Pair) -> list[dict[str, str]]:
        passage = neutralise_delimiters(truncate(pair.text, self.max_chars))
        return self.prompt.messages(query=pair.query, passage=passage)

    def judge_one(self, pair: Pair) -> Judgment:
        messages, key, hit = self._lookup(pair)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        try:
            result = self._call(messages)
        except Exception as e:  # after the backend's own retries: record the pair as failed, never drop it
            result = _failed(e)
        return self._record(pair, key, result, time.perf_counter() - t0)

    def _lookup(self, pair: Pair) -> tuple[list[dict[str, str]], str, Judgment | None]:
        """The pair's prompt, its cache key, and its cached judgment if there is one."""
        messages = self.messages(pair)
        key = cache_key(
            kind="judge", llm=self.llm.spec, prompt=self.prompt.ref, messages=messages, logprobs=self.use_logprobs
        )
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return messages, key, Judgment(**{**hit, "qid": pair.qid, "doc_id": pair.doc_id, "cached": True})
        return messages, key, None

    def _record(self, pair: Pair, key: str, result: dict[str, Any], seconds: float) -> Judgment:
        """The pair's judgment from the model's result, cached unless it failed."""
        judgment = Judgment(
            qid=pair.qid,
            doc_id=pair.doc_id,
            model=self.llm.spec,
            prompt_id=self.prompt.ref,
            latency_s=round(seconds, 4),
            **result,
        )
        if self.cache is not None and judgment.error is None:
            self.cache.put(key, judgment.model_dump(exclude={"qid", "doc_id", "cached"}))
        return judgment

    def _call(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        if self.use_logprobs:
            try:
                cp = self.llm.choice_probs(messages, GRADE_TOKENS)
            except LogprobsUnavailable:
                # One answer without logprobs falls back to text for that pair; a server that never sends
                # them (3 in a row) is switched to text grading for the rest of the run.
                with self._lock:
                    self._no_logprobs += 1
                    if self._no_logprobs >= 3 and self.use_logprobs:
                        self.use_logprobs = False
                        log.warning("%s returns no logprobs: grading from generated text instead", self.llm.spec)
            else:
                self._no_logprobs = 0
                return _from_probs(cp)
        out = self.llm.complete(messages, max_tokens=16)
        tokens_in, tokens_out, raw = out.prompt_tokens, out.completion_tokens, out.text
        grade: int | None = parse_grade(out.text)
        if grade is None:
            repair = [*messages, {"role": "assistant", "content": out.text}, {"role": "user", "content": REPAIR}]
            out = self.llm.complete(repair, max_tokens=8)
            tokens_in, tokens_out = tokens_in + out.prompt_tokens, tokens_out + out.completion_tokens
            raw = f"{raw}\n[repair] {out.text}"
            grade = parse_grade(out.text)
        error = None if grade is not None else "unparseable answer"
        return {
            "grade": grade,
            "expected": None if grade is None else float(grade),
            "raw": raw,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "error": error,
        }

    def _judge_batch(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """The pairs' judgments, the ones not cached read from one batched forward pass (transformers backend);
        a batch that fails (out of memory, say) is judged pair by pair, so only a pair that fails alone is lost."""
        looked = [self._lookup(p) for p in pairs]
        todo = [(p, messages, key) for p, (messages, key, hit) in zip(pairs, looked, strict=True) if hit is None]
        fresh: Iterator[Judgment] = iter(())
        if todo:
            t0 = time.perf_counter()
            try:
                probs = self.llm.choice_probs_many([messages for _, messages, _ in todo], GRADE_TOKENS)
            except Exception as e:
                if _setup_error(e):
                    raise
                log.warning("a batch of %d pairs failed (%s): judging them one at a time", len(todo), type(e).__name__)
                return [hit or self.judge_one(p) for p, (_, _, hit) in zip(pairs, looked, strict=True)]
            each = (time.perf_counter() - t0) / len(todo)  # the batch's time, shared
            fresh = iter(
                [self._record(p, key, _from_probs(cp), each) for (p, _, key), cp in zip(todo, probs, strict=True)]
            )
        return [hit if hit is not None else next(fresh) for _, _, hit in looked]

    def iter_judge(self, pairs: Sequence[Pair]) -> Iterator[Judgment]:
        # Sorting by query lets a local model reuse the rubric+query prefix of its KV cache.
        ordered = sorted(pairs, key=lambda p: (p.qid, p.doc_id))
        if self.llm.batched_generation and self.use_logprobs and self.batch_size > 1:
            for start in range(0, len(ordered), self.batch_size):
                yield from self._judge_batch(ordered[start : start + self.batch_size])
            return
        if self.concurrency <= 1:
            yield from map(self.judge_one, ordered)
            return
        with ThreadPoolExecutor(self.concurrency) as pool:
            yield from pool.map(self.judge_one, ordered)

    def judge(self, pairs: Sequence[Pair], *, show_progress: bool = True) -> list[Judgment]:
        out: list[Judgment] = []
        tokens_in = tokens_out = 0
        with progress_bar(f"judge ({self.llm.spec})", total=len(pairs), enabled=show_progress) as advance:
            for j in self.iter_judge(pairs):
                out.append(j)
                if not j.cached:
                    tokens_in, tokens_out = tokens_in + j.tokens_in, tokens_out + j.tokens_out
                advance(1, self._spend(tokens_in, tokens_out))
        record_rate(self.llm.spec, [j for j in out if not j.cached and j.grade is not None])
        return out

    def _spend(self, tokens_in: int, tokens_out: int) -> str:
        """Progress-bar text: tokens sent and received so far and what they cost."""
        cost = cost_usd(self.llm.spec, tokens_in, tokens_out, self.prices)
        priced = "" if cost is None else f" ${cost:.4f}"
        return f"{tokens_in:,}+{tokens_out:,} tok{priced}"


# Prompt tokens per second of local judges on 2 CPU cores (llama.cpp, ../shared/MODELS.md), until this machine
# has measured its own (``record_rate``): what ``--dry-run`` turns into a time estimate.
DEFAULT_TOKENS_PER_S = {"qwen2.5-coder-1.5b": 77.0, "qwen2.5-coder-0.5b": 156.0, "smollm2-135m": 202.0}


def _rates_file() -> Path:
    from .models import CACHE_DIR

    return CACHE_DIR / "judge-rates.json"


def record_rate(spec: str, fresh: Sequence[Judgment]) -> None:
    """Remember this machine's measured prompt tokens per second for ``spec`` (from calls made, not cached)."""
    secs, tokens = sum(j.latency_s for j in fresh), sum(j.tokens_in + j.tokens_out for j in fresh)
    if len(fresh) < 3 or secs <= 0:
        return
    path = _rates_file()
    try:
        rates = json.loads(path.read_text()) if path.exists() else {}
        rates[spec] = {"tokens_per_s": tokens / secs, "calls": len(fresh)}
        atomic_write_text(path, json.dumps(rates, indent=1))
    except (OSError, ValueError):  # a rate is a nicety: never fail a judge run over it
        log.debug("could not record the judge rate in %s", path)


def measured_rate(spec: str) -> tuple[float, str] | None:
    """(tokens per second, where it comes from) for a judge, or None when nothing is known."""
    path = _rates_file()
    try:
        rates = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        rates = {}
    if spec in rates:
        return float(rates[spec]["tokens_per_s"]), f"measured on this machine over {rates[spec]['calls']} calls"
    name = parse_spec(spec).model
    if name in DEFAULT_TOKENS_PER_S:
        return DEFAULT_TOKENS_PER_S[name], "llama.cpp on 2 CPU cores (qrelkit's reference machine)"
    return None


def estimate(
    pairs: Sequence[Pair], llm: str, *, prompt: str | Prompt = "judge-rubric", max_chars: int = 1200, prices: Any = None
) -> dict[str, Any]:
    """What judging ``pairs`` would take, without loading or calling the model: tokens (about 4 characters a
    token), cost, and for local judges the time at a measured rate."""
    tmpl = load_prompt(prompt) if isinstance(prompt, str) else prompt
    chars = sum(
        len(m["content"]) for p in pairs for m in tmpl.messages(query=p.query, passage=truncate(p.text, max_chars))
    )
    est_in, est_out = chars // 4, len(pairs)  # one answer token per pair when grades come from logprobs
    out: dict[str, Any] = {
        "dry_run": True,
        "llm": llm,
        "pairs": len(pairs),
        "est_tokens_in": est_in,
        "est_tokens_out": est_out,
        "price_per_1m_tokens": price_of(llm, prices),
        "est_cost_usd": cost_usd(llm, est_in, est_out, prices),
    }
    if hint := missing_price(llm, prices):
        out["price_note"] = hint
    rate = measured_rate(llm) if is_local(llm) else None
    if rate is not None:
        seconds = (est_in + est_out) / rate[0]
        out.update({"est_seconds": round(seconds), "est_time": _duration(seconds), "rate_source": rate[1]})
    return out


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


ONE_GRADE_WARNING = 20  # graded pairs from which one grade for all is a broken teacher, not chance


def judge_stats(judgments: Sequence[Judgment]) -> dict[str, Any]:
    graded = [j for j in judgments if j.grade is not None]
    return {
        "pairs": len(judgments),
        "graded": len(graded),
        "failures": len(judgments) - len(graded),
        "cached": sum(j.cached for j in judgments),
        "low_mass": sum(1 for j in graded if j.mass is not None and j.mass < LOW_MASS),
        "tokens_in": sum(j.tokens_in for j in judgments if not j.cached),
        "tokens_out": sum(j.tokens_out for j in judgments if not j.cached),
        # Model time per pair, as measured when each judgment was made (cache hits keep their latency).
        "model_seconds": round(sum(j.latency_s for j in judgments), 3),
        "grade_counts": {g: sum(1 for j in graded if j.grade == g) for g in GRADES},
    }


def failures_file(qrels_path: str | Path) -> Path:
    """``teacher.failures.jsonl``: pairs that could not be graded, with the reason."""
    return sidecar(qrels_path, "failures.jsonl")


def write_judgments(
    judgments: Sequence[Judgment], qrels_path: str | Path, judgments_path: str | Path | None = None
) -> dict[str, Any]:
    """Write ``teacher.qrels`` (graded pairs only), ``teacher.judgments.jsonl`` (everything) and failures, if any."""
    qrels_path = Path(qrels_path)
    judgments_path = Path(judgments_path) if judgments_path else judgments_file(qrels_path)
    write_qrels(qrels_path, ((j.qid, j.doc_id, j.grade) for j in judgments if j.grade is not None))
    write_jsonl(judgments_path, (j.model_dump() for j in judgments))
    failures = [j for j in judgments if j.grade is None]
    failures_path = failures_file(qrels_path)
    if failures:
        write_jsonl(
            failures_path, ({"qid": j.qid, "doc_id": j.doc_id, "error": j.error, "raw": j.raw} for j in failures)
        )
    else:
        failures_path.unlink(missing_ok=True)  # a clean rerun must not leave an old failures list behind
    stats = judge_stats(judgments)
    if stats["low_mass"]:
        log.warning(
            "%d judgment(s) put under %.0f%% probability on the grade digits", stats["low_mass"], 100 * LOW_MASS
        )
    used = [g for g, n in stats["grade_counts"].items() if n]
    if len(used) == 1 and stats["graded"] >= ONE_GRADE_WARNING:
        log.warning(
            "the teacher gave all %d graded pairs grade %d: it does not tell pairs apart, and no student can learn "
            "from it (try a stronger --llm, or check the prompt)",
            stats["graded"],
            used[0],
        )
    return stats
