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
) -> tuple[list[Query], dict[str, Any]]:
    """Write up to ``per_doc`` queries for each of ``n_seeds`` randomly chosen documents.

    Returns the deduplicated, filtered queries (each keeps its seed document id, style and prompt id)
    and counts of what was dropped: too short, too long or copied from the document (``filtered``), a worked
    example of the prompt repeated for a document that does not back it (``example_copies``), duplicates.
    """
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
    with progress_bar(f"synth ({model.spec})", total=len(seeds), enabled=show_progress) as advance:
        for doc in seeds:
            messages = tmpl.messages(passage=truncate(doc.text, max_chars))
            key = cache_key(kind="synth", llm=model.spec, prompt=tmpl.ref, messages=messages, seed=seed)
            hit = store.get(key) if store is not None else None
            if hit is not None:
                reply = hit["text"]
                stats["cached"] += 1
            else:
                reply = model.complete(messages, max_tokens=80, temperature=0.0, seed=seed).text
                stats["calls"] += 1
                if store is not None:
                    store.put(key, {"text": reply})
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
                        Query(
                            qid=f"s{len(queries)}", text=text, style=style, seed_doc_id=doc.doc_id, prompt_id=tmpl.ref
                        )
                    )
            advance(1)
    if stats["unparseable"]:
        log.warning("synth: %d of %d replies had no parseable query", stats["unparseable"], len(seeds))
    return queries, stats


def require_queries(queries: Sequence[Query], stats: dict[str, Any]) -> None:
    """Fail clearly where the LLM wrote no usable query (the next stages would only produce empty files)."""
    if not queries:
        raise QrelkitError(f"synth: the LLM wrote no usable query for {stats['seeds']} seed documents ({stats})")
