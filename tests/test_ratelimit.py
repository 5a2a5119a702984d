"""Requests-per-minute and tokens-per-minute limits: a simulated clock for the arithmetic, the fake server
for the real thing."""

from __future__ import annotations

import time

import pytest
from fake_openai import FakeOpenAI

from qrelkit.judge import Judge
from qrelkit.llm.openai_backend import OpenAIBackend
from qrelkit.llm.ratelimit import RateLimiter
from qrelkit.records import Pair


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_requests_per_minute_spaces_requests_after_one_second_of_burst():
    clock = FakeClock()
    limiter = RateLimiter(rpm=120, clock=clock, sleep=clock.sleep)  # 2 per second, bucket of 2
    sent_at = []
    for _ in range(10):
        limiter.acquire()
        sent_at.append(clock.now)
    assert sent_at[:2] == [0.0, 0.0]
    assert sent_at[-1] == pytest.approx(4.0), "8 more requests at 2/s take 4 s"
    for i in range(len(sent_at)):  # never more than bucket + rate × elapsed in any window
        for j in range(i, len(sent_at)):
            assert j - i + 1 <= 2 + 2 * (sent_at[j] - sent_at[i]) + 1e-9


def test_tokens_per_minute_waits_for_tokens_and_charges_the_reported_usage():
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock, sleep=clock.sleep)  # 100 tokens/s, bucket of 100
    assert limiter.acquire(tokens=100) == 0.0
    assert limiter.acquire(tokens=50) == pytest.approx(0.5)
    limiter.settle(estimated=50, actual=150)  # the server counted 100 more than estimated: 1 s of debt
    assert limiter.acquire(tokens=100) == pytest.approx(2.0)
    # A request bigger than the bucket still goes (once the bucket is full), it is not blocked for ever.
    assert limiter.acquire(tokens=1000) == pytest.approx(1.0)


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="rpm must be positive"):
        RateLimiter(rpm=0)


def test_judge_against_server_keeps_to_the_requests_per_minute_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("QRELKIT_API_KEY", "sk-test")
    pairs = [Pair(qid="q", query="query", doc_id=f"d{i}", text=f"passage {i}") for i in range(12)]
    with FakeOpenAI() as server:
        llm = OpenAIBackend(f"{server.url}#fake-model", timeout=5, max_retries=0)
        t0 = time.monotonic()
        js = Judge(llm, concurrency=4, rpm=300).judge(pairs, show_progress=False)  # 5/s
        elapsed = time.monotonic() - t0
    assert all(j.grade == 2 for j in js)
    assert elapsed >= (12 - 5) / 5 - 0.05, "7 requests beyond the 5-request burst need at least 1.4 s"
    t = sorted(server.arrivals)
    for i in range(len(t)):
        for j in range(i, len(t)):
            assert j - i + 1 <= 5 + 5 * (t[j] - t[i]) + 1, "more requests in a window than the limit allows"


def test_rate_limits_from_environment(monkeypatch):
    monkeypatch.setenv("QRELKIT_API_KEY", "sk-test")
    monkeypatch.setenv("QRELKIT_RPM", "60")
    monkeypatch.setenv("QRELKIT_TPM", "nonsense")
    with pytest.raises(Exception, match="QRELKIT_TPM='nonsense' is not a number"):
        OpenAIBackend("http://127.0.0.1:9/v1#m")
    monkeypatch.setenv("QRELKIT_TPM", "90000")
    llm = OpenAIBackend("http://127.0.0.1:9/v1#m")
    assert llm.limiter.requests is not None and llm.limiter.requests.rate == 1.0
    assert llm.limiter.tokens is not None and llm.limiter.tokens.rate == 1500.0
