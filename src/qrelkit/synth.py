"""Synthesize realistic enterprise search queries from seed documents with an LLM."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import QrelkitError
from .judge import truncate
from .llm import LLM, ResultCache, cache_key, get_llm
from .progress import progress_bar
from .prompts import Prompt, load_prompt
from .records import Document, Query

log = logging.getLogger("qrelkit")

MIN_CHARS, MAX_WORDS = 3, 24
STYLE_MAX_WORDS = {"short": 5, "keyword": 10}
_LINE = re.compile(r"^\s*[*\-\d.)]*\s*\**(\w+)\**\s*:\s*(.+?)\s*$")


def normalize_query(text: str) -> str:
    """Lower-case, strip quotes and trailing punctuation, collapse spaces: the key for deduplication."""
    t = text.strip().strip("\"'`").lower()
    t = re.sub(r"[\s]+", " ", t)
    return re.sub(r"[?.!,;:]+$", "", t).strip()


def parse_styled_queries(reply: str, styles: Sequence[str]) -> list[tuple[str, str]]:
    """Parse ``style: query`` lines; lines for unknown styles are ignored."""
    wanted = {s.lower() for s in styles}
    out = []
    for line in reply.splitlines():
        m = _LINE.match(line)
        if m and m.group(1).lower() in wanted:
            out.append((m.group(1).lower(), m.group(2).strip().strip("\"'`")))
    return out


def keep_query(query: str, document: str, style: str = "") -> bool:
    """Filter: not empty, not too long for its style, and not a sentence copied from the document."""
    words = query.split()
    if len(query) < MIN_CHARS or not words or len(words) > STYLE_MAX_WORDS.get(style, MAX_WORDS):
        return False
    return not (len(words) >= 6 and normalize_query(query) in normalize_query(document))


def example_queries(prompt: Prompt, styles: Sequence[str]) -> set[str]:
    """The normalized queries of the prompt's worked examples (small models sometimes answer with them)."""
    examples = prompt.extra.get("examples", [])
    replies = [str(ex.get("reply", "")) for ex in examples] if isinstance(examples, list) else []
    return {normalize_query(text) for reply in replies for _, text in parse_styled_queries(reply, styles)}


def copies_example(query: str, document: str, examples: set[str]) -> bool:
    """True for a worked example's query that the document does not back (under half its words occur in it)."""
    norm = normalize_query(query)
    if norm not in examples:
        return False
    words = set(re.findall(r"\w+", norm))
    return len(words & set(re.findall(r"\w+", document.lower()))) * 2 < len(words)


def synthesize(
    docs: Sequence[Document],
    llm: str | LLM,
    *,
    n_seeds: int = 50,
    per_doc: int = 3,
    prompt: str | Prompt = "synth-queries",
    cache: str | Path | ResultCache | None = None,
    seed: int = 0,
    max_chars: int = 1500,
    show_progress: bool = True,
    batch_size: int = 16,
    concurrency: int = 4,
) -> tuple[list[Query], dict[str, Any]]:
    """Write up to ``per_doc`` queries for each of ``n_seeds`` randomly chosen documents.

    Returns the deduplicated, filtered queries (each keeps its seed document id, style and prompt id)
    and counts of what was dropped: too short, too long or copied from the document (``filtered``), a worked
    example of the prompt repeated for a document that does not back it (``example_copies``), duplicates.
    Seeds go to the LLM ``batch_size`` at a time where it generates in batches (transformers: on a GPU the
    way to tens of thousands of queries) or, for HTTP backends, ``concurrency`` requests in flight; the
    queries are the same either way, in seed order.
    """
    if batch_size < 1 or concurrency < 1:
        raise QrelkitError(f"batch_size and concurrency must be at least 1, got {batch_size} and {concurrency}")
    model = get_llm(llm) if isinstance(llm, str) else llm
    tmpl = load_prompt(prompt) if isinstance(prompt, str) else prompt
    store = ResultCache(cache) if isinstance(cache, str | Path) else cache
    styles = list(tmpl.extra.get("styles", ["keyword", "question", "short"]))  # type: ignore[call-overload]
    echoes = example_queries(tmpl, styles)
    rng = random.Random(seed)
    seeds = rng.sample(list(docs), min(n_seeds, len(docs)))
    queries: list[Query] = []
    seen: set[str] = set()
    counts = ["calls", "cached", "unparseable", "filtered", "example_copies", "duplicates"]
    stats = {"seeds": len(seeds)} | dict.fromkeys(counts, 0)
    # one at a time for a model that gains nothing from groups (llama.cpp): each answer cached as it comes
    chunk = concurrency if model.parallel_requests else batch_size if model.batched_generation else 1
    with progress_bar(f"synth ({model.spec})", total=len(seeds), enabled=show_progress) as advance:
        for start in range(0, len(seeds), chunk):
            part = seeds[start : start + chunk]
            replies = _replies(model, tmpl, part, store, stats, seed=seed, max_chars=max_chars, concurrency=chunk)
            for doc, reply in zip(part, replies, strict=True):
                _keep_queries(doc, reply, tmpl, styles, per_doc, echoes, seen, queries, stats)
            advance(len(part))
    if stats["unparseable"]:
        log.warning("synth: %d of %d replies had no parseable query", stats["unparseable"], len(seeds))
    return queries, stats


def _replies(
    model: LLM,
    tmpl: Prompt,
    docs: Sequence[Document],
    store: ResultCache | None,
    stats: dict[str, int],
    *,
    seed: int,
    max_chars: int,
    concurrency: int,
) -> list[str]:
    """The LLM's reply for each document: from the cache, or asked for all at once (then cached one by one)."""
    conversations = [tmpl.messages(passage=truncate(doc.text, max_chars)) for doc in docs]
    keys = [cache_key(kind="synth", llm=model.spec, prompt=tmpl.ref, messages=m, seed=seed) for m in conversations]
    hits = [store.get(k) if store is not None else None for k in keys]
    replies = [str(hit["text"]) if hit is not None else "" for hit in hits]
    missing = [i for i, hit in enumerate(hits) if hit is None]
    stats["cached"] += len(docs) - len(missing)
    asked = model.complete_many(
        [conversations[i] for i in missing], max_tokens=80, temperature=0.0, seed=seed, concurrency=concurrency
    )
    for i, completion in zip(missing, asked, strict=True):
        replies[i] = completion.text
        stats["calls"] += 1
        if store is not None:
            store.put(keys[i], {"text": completion.text})
    return replies


def _keep_queries(
    doc: Document,
    reply: str,
    tmpl: Prompt,
    styles: list[str],
    per_doc: int,
    echoes: set[str],
    seen: set[str],
    queries: list[Query],
    stats: dict[str, int],
) -> None:
    """Parse one reply and append the queries that pass the filters to ``queries`` (counting the others)."""
    parsed = parse_styled_queries(reply, styles)
    if not parsed:
        stats["unparseable"] += 1
    for style, text in parsed[:per_doc]:
        norm = normalize_query(text)
        if not keep_query(text, doc.text, style):
            stats["filtered"] += 1
        elif copies_example(text, doc.text, echoes):
            stats["example_copies"] += 1
        elif norm in seen:
            stats["duplicates"] += 1
        else:
            seen.add(norm)
            queries.append(
                Query(qid=f"s{len(queries)}", text=text, style=style, seed_doc_id=doc.doc_id, prompt_id=tmpl.ref)
            )


def require_queries(queries: Sequence[Query], stats: dict[str, Any]) -> None:
    """Fail clearly where the LLM wrote no usable query (the next stages would only produce empty files)."""
    if not queries:
        raise QrelkitError(f"synth: the LLM wrote no usable query for {stats['seeds']} seed documents ({stats})")
