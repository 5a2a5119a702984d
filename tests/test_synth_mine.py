from __future__ import annotations

from qrelkit.mine import mine_pairs
from qrelkit.prompts import load_prompt
from qrelkit.records import Document, Query
from qrelkit.synth import example_queries, keep_query, normalize_query, parse_styled_queries, synthesize

REPLY = "keyword: vpn client update\nquestion: Where do I download the VPN client?\n- **short**: VPN\nnote: ignored"


def test_parse_styled_queries():
    assert parse_styled_queries(REPLY, ["keyword", "question", "short"]) == [
        ("keyword", "vpn client update"),
        ("question", "Where do I download the VPN client?"),
        ("short", "VPN"),
    ]


def test_filters_copies_and_normalizes():
    doc = "The VPN client must be updated to version 5.2 before March."
    assert not keep_query("the vpn client must be updated to version 5.2", doc)
    assert keep_query("vpn update deadline", doc)
    assert not keep_query("x", doc)
    assert not keep_query("the senior citizen exemption rebate is paid", doc, "short")
    assert keep_query("the senior citizen exemption rebate is paid", doc, "question")
    assert normalize_query('  "Where is  the VPN?" ') == "where is the vpn"


def test_synthesize_dedupes_and_keeps_provenance(scripted, small_corpus, tmp_path):
    llm = scripted(reply=lambda text: "keyword: company policy\nquestion: what is the policy?\nshort: Policy")
    queries, stats = synthesize(
        small_corpus, llm, n_seeds=3, per_doc=3, cache=tmp_path / "c.sqlite", show_progress=False
    )
    # The same three queries for every document: only the first document's survive deduplication.
    assert [q.style for q in queries] == ["keyword", "question", "short"]
    assert stats["duplicates"] == 6
    assert queries[0].seed_doc_id in {d.doc_id for d in small_corpus}
    assert queries[0].prompt_id == "synth-queries@2"
    synthesize(small_corpus, llm, n_seeds=3, cache=tmp_path / "c.sqlite", show_progress=False)
    assert llm.calls == 3, "cached replies must not call the model again"


def test_synthesize_drops_the_prompts_worked_examples_unless_the_document_backs_them(scripted):
    styles = ["keyword", "question", "short"]
    assert "expense claim deadline receipts" in example_queries(load_prompt("synth-queries"), styles)
    copied = "keyword: expense claim deadline receipts\nquestion: When are late expense claims paid?\nshort: expenses"
    llm = scripted(reply=lambda text: copied)
    docs = [
        Document(doc_id="guns", text="Select Perk: 450 RPM, 900 RPM, Accelerated Coils, Air Brakes."),
        Document(doc_id="payroll", text="Late expense claims: all expenses filed after the 20th wait a month."),
    ]
    queries, stats = synthesize(docs, llm, n_seeds=2, show_progress=False)
    # A document about guns does not back the examples' expense queries: all three are dropped. One about late
    # expense claims backs two of them (the keyword query's "deadline receipts" are not in it).
    assert sorted((q.seed_doc_id, q.text) for q in queries) == [
        ("payroll", "When are late expense claims paid?"),
        ("payroll", "expenses"),
    ]
    assert stats["example_copies"] == 4 and stats["filtered"] == 0


def test_synthesis_in_batches_resumes_from_a_partial_cache_and_writes_the_same_queries(
    scripted, small_corpus, tmp_path
):
    def reply(text: str) -> str:
        word = text.rsplit("Document:", 1)[-1].split()[0].lower()  # the passage's first word
        return f"keyword: {word} policy\nquestion: what does {word} say?\nshort: {word}"

    one_by_one, stats = synthesize(small_corpus, scripted(reply=reply), n_seeds=6, batch_size=1, show_progress=False)
    # a run over half the documents fills the cache with theirs; the full run asks only for the other three, four
    # prompts at a time, and writes what the uncached one-by-one run wrote
    synthesize(small_corpus[:3], scripted(reply=reply), n_seeds=3, cache=tmp_path / "c.sqlite", show_progress=False)
    rest = scripted(reply=reply)
    rest.batched_generation = True  # as the transformers backend: groups of batch_size prompts
    groups: list[int] = []
    one_group = rest.complete_many
    rest.complete_many = lambda conversations, **kw: groups.append(len(conversations)) or one_group(conversations, **kw)
    resumed, resumed_stats = synthesize(
        small_corpus, rest, n_seeds=6, batch_size=4, cache=tmp_path / "c.sqlite", show_progress=False
    )
    assert rest.calls == 3 and resumed_stats["cached"] == 3 and resumed_stats["calls"] == 3
    assert len(groups) == 2 and sum(groups) == 3  # seeds 1-4 and 5-6, each group's uncached ones asked at once
    assert [q.model_dump() for q in resumed] == [q.model_dump() for q in one_by_one] and len(resumed) > 12
    batched, batched_stats = synthesize(
        small_corpus, scripted(reply=reply), n_seeds=6, batch_size=4, show_progress=False
    )
    assert [q.model_dump() for q in batched] == [q.model_dump() for q in one_by_one] and batched_stats == stats


def test_mine_includes_seed_and_ranks_bm25(small_corpus):
    queries = [
        Query(qid="a", text="download vpn client", seed_doc_id="printer"),
        Query(qid="b", text="annual leave days", seed_doc_id="holiday"),
    ]
    pairs, stats = mine_pairs(queries, small_corpus, k=3, n_random=2)
    a = [p for p in pairs if p.qid == "a"]
    assert a[0].doc_id == "printer" and a[0].source == "seed"
    assert a[1].doc_id == "vpn" and a[1].bm25_rank == 1
    b = [p for p in pairs if p.qid == "b"]
    assert b[0].doc_id == "holiday" and b[0].bm25_rank == 1, "a seed found by BM25 keeps its rank"
    assert len({(p.qid, p.doc_id) for p in pairs}) == len(pairs)
    assert all(p.bm25_score is None or p.bm25_score > 0 for p in pairs)
    randoms = [p for p in pairs if p.source == "random"]
    assert len(randoms) == 4 and stats["by_source"]["random"] == 4
    again, _ = mine_pairs(queries, small_corpus, k=3, n_random=2)
    assert [p.doc_id for p in again] == [p.doc_id for p in pairs], "mining is deterministic"
