from __future__ import annotations

import json

import pytest
from fake_openai import FakeOpenAI

from qrelkit.errors import InputError
from qrelkit.pipeline import judge_file
from qrelkit.pricing import cost_usd, load_prices, model_name, price_of


def test_price_lookup_and_cost():
    assert model_name("openai:gpt-4o") == "gpt-4o"
    assert model_name("http://localhost:8000/v1#Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B"
    assert price_of("gguf:qwen2.5-coder-1.5b") == (0.0, 0.0) and price_of("qwen2.5-coder-1.5b") == (0.0, 0.0)
    assert price_of("http://h/v1#unknown-model") is None
    # 1M input tokens at $2.50 + 0.5M output tokens at $10 = $7.50
    assert cost_usd("openai:gpt-4o", 1_000_000, 500_000) == pytest.approx(7.5)


def test_a_dated_snapshot_costs_what_its_model_does_unless_the_table_names_it(tmp_path):
    assert price_of("openai:gpt-4o-2024-08-06") == price_of("openai:gpt-4o") == (2.5, 10.0)
    assert price_of("openai:gpt-5-mini-2025-08-07") == (0.25, 2.0)
    assert price_of("openai:gpt-4o-2024-05-13") == (5.0, 15.0), "an exact entry wins over the model's"
    assert price_of("openai:my-model-2025-01-01") is None and price_of("openai:gpt-4o-v2") is None
    (tmp_path / "p.yaml").write_text("gpt-4o-2024-11-20: {input: 1, output: 1}\n")
    table = load_prices(tmp_path / "p.yaml")
    assert price_of("openai:gpt-4o-2024-11-20", table) == (1.0, 1.0) and price_of(
        "openai:gpt-4o-2024-08-06", table
    ) == (2.5, 10.0)


def test_custom_price_table(tmp_path):
    (tmp_path / "p.yaml").write_text("my-vllm-model: {input: 0.2, output: 0.4}\n")
    table = load_prices(tmp_path / "p.yaml")
    assert cost_usd("http://h/v1#my-vllm-model", 2_000_000, 0, table) == pytest.approx(0.4)
    assert table["gpt-4o"] == (2.5, 10.0), "defaults stay"
    (tmp_path / "bad.yaml").write_text("m: {input: 1}\n")
    with pytest.raises(InputError, match=r"bad\.yaml \[m\]"):
        load_prices(tmp_path / "bad.yaml")


def test_an_unpriced_hosted_model_says_how_to_price_it(tmp_path):
    from qrelkit.judge import estimate
    from qrelkit.records import Pair

    pairs = [Pair(qid="q", query="vpn", doc_id="d", text="the vpn client")]
    est = estimate(pairs, "openai:gpt-5.4-mini")
    assert est["est_cost_usd"] is None and "add it with --prices" in est["price_note"]
    assert "gpt-5.4-mini: {input" in est["price_note"]
    (tmp_path / "p.yaml").write_text("gpt-5.4-mini: {input: 0.75, output: 4.5}\n")
    priced = estimate(pairs, "openai:gpt-5.4-mini", prices=load_prices(tmp_path / "p.yaml"))
    assert priced["est_cost_usd"] > 0 and "price_note" not in priced
    assert "price_note" not in estimate(pairs, "gguf:smollm2-135m") and "price_note" not in estimate(
        pairs, "openai:gpt-4o"
    )


def _pairs_file(tmp_path, n=5):
    p = tmp_path / "pairs.jsonl"
    p.write_text(
        "".join(
            json.dumps({"qid": "q", "query": "vpn", "doc_id": f"d{i}", "text": f"word{i} " * 40}) + "\n"
            for i in range(n)
        )
    )
    return p


def test_dry_run_calls_nothing_and_real_run_records_cost(tmp_path, monkeypatch):
    monkeypatch.setenv("QRELKIT_API_KEY", "sk-unused")
    (tmp_path / "p.yaml").write_text("fake-model: {input: 1.0, output: 2.0}\n")
    pairs = _pairs_file(tmp_path)
    with FakeOpenAI() as server:
        llm = f"{server.url}#fake-model"
        est = judge_file(pairs, tmp_path / "t.qrels", llm=llm, prices=tmp_path / "p.yaml", dry_run=True)
        assert server.requests == [] and not (tmp_path / "t.qrels").exists()
        assert est["pairs"] == 5 and est["est_tokens_in"] > 5 * 40 and est["est_cost_usd"] > 0
        stats = judge_file(
            pairs, tmp_path / "t.qrels", llm=llm, prices=tmp_path / "p.yaml", cache=tmp_path / "c.sqlite"
        )
        again = judge_file(
            pairs, tmp_path / "t.qrels", llm=llm, prices=tmp_path / "p.yaml", cache=tmp_path / "c.sqlite"
        )
    # The fake server reports 50 prompt tokens and 1 completion token per call.
    assert stats["tokens_in"] == 250 and stats["tokens_out"] == 5
    assert stats["cost_usd"] == pytest.approx(250 / 1e6 * 1.0 + 5 / 1e6 * 2.0)
    assert again["cost_usd"] == 0 and again["cached"] == 5, "cache hits are not paid again"
    manifest = json.loads((tmp_path / "t.run.json").read_text())
    assert manifest["cost_usd"] == 0 and manifest["llm"] == llm


def test_progress_text_shows_tokens_and_running_cost(monkeypatch):
    from qrelkit.judge import Judge
    from qrelkit.llm.openai_backend import OpenAIBackend

    monkeypatch.setenv("QRELKIT_API_KEY", "sk-test")
    priced = Judge(OpenAIBackend("http://127.0.0.1:9/v1#gpt-4o"))
    assert priced._spend(1_000_000, 1_000) == "1,000,000+1,000 tok $2.5100"
    unpriced = Judge(OpenAIBackend("http://127.0.0.1:9/v1#no-such-model"))
    assert unpriced._spend(10, 1) == "10+1 tok", "no price known: no made-up cost"


def test_dry_run_of_a_local_judge_estimates_time_from_a_measured_rate(tmp_path, monkeypatch):
    import qrelkit.models
    from qrelkit.judge import estimate, record_rate
    from qrelkit.records import Judgment, Pair

    monkeypatch.setattr(qrelkit.models, "CACHE_DIR", tmp_path)
    pairs = [Pair(qid="q", query="vpn client", doc_id=f"d{i}", text="word " * 200) for i in range(30)]
    est = estimate(pairs, "qwen2.5-coder-1.5b")
    tokens = est["est_tokens_in"] + est["est_tokens_out"]
    assert est["est_seconds"] == round(tokens / 77.0) and "reference machine" in est["rate_source"]
    assert est["est_cost_usd"] == 0
    # after a real run, this machine's own rate is used
    fresh = [Judgment(qid="q", doc_id=f"d{i}", grade=1, tokens_in=400, tokens_out=1, latency_s=2.0) for i in range(4)]
    record_rate("qwen2.5-coder-1.5b", fresh)
    est = estimate(pairs, "qwen2.5-coder-1.5b")
    assert est["est_seconds"] == round(tokens / (401 / 2.0)) and "measured on this machine" in est["rate_source"]
    assert "est_seconds" not in estimate(pairs, "openai:gpt-4o"), "no time guess for a remote API"


def test_the_model_string_is_parsed_in_one_place():
    from qrelkit.errors import QrelkitError
    from qrelkit.llm import parse_spec
    from qrelkit.pricing import is_local, model_name

    assert parse_spec("gguf:/m/q.gguf").backend == "gguf" and parse_spec("gguf:/m/q.gguf").local
    assert parse_spec("http://h:8000/v1#Qwen/Qwen2.5-7B") == parse_spec("http://h:8000/v1#Qwen/Qwen2.5-7B")
    http = parse_spec("http://h:8000/v1#Qwen/Qwen2.5-7B")
    assert (http.backend, http.model, http.base_url, http.local) == (
        "http",
        "Qwen/Qwen2.5-7B",
        "http://h:8000/v1",
        False,
    )
    assert parse_spec("azure:my-deploy").model == "my-deploy" and not parse_spec("openai:gpt-4o").local
    assert parse_spec("qwen2.5-coder-1.5b").local  # a bare alias runs in process
    with pytest.raises(QrelkitError, match="name the model after '#'"):
        parse_spec("http://h:8000/v1")
    with pytest.raises(QrelkitError, match="unknown model backend"):
        parse_spec("bedrock:claude")
    assert model_name("openai:gpt-4o") == "gpt-4o" and is_local("hf:Qwen/Qwen2.5-1.5B") and not is_local("bedrock:x")
