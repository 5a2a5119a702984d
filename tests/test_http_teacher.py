"""The OpenAI-compatible teacher against a scripted fake server: faults, caching, concurrency, secrets."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAI

from qrelkit.judge import Judge, write_judgments
from qrelkit.llm.openai_backend import OpenAIBackend
from qrelkit.records import Pair

KEY = "sk-test-SECRET-0123456789"


def make_pairs(markers: list[str]) -> list[Pair]:
    return [
        Pair(qid=f"q{i % 3}", query=f"query {i % 3}", doc_id=f"d{i}", text=f"passage {i} {m}")
        for i, m in enumerate(markers)
    ]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("QRELKIT_API_KEY", KEY)


def backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(f"{url}#fake-model", timeout=1.0, max_retries=2)


def test_faults_end_labelled_once_or_listed_as_failures(tmp_path):
    markers = ["", "RATE", "FAIL", "SLOW", "GARBAGE", "TRUNC", "", "RATE"]
    pairs = make_pairs(markers)
    with FakeOpenAI(grade_for=lambda t: 3 if "passage 0" in t else 1) as server:
        judge = Judge(backend(server.url), cache=tmp_path / "cache.sqlite", concurrency=3)
        js = judge.judge(pairs, show_progress=False)
        stats = write_judgments(js, tmp_path / "teacher.qrels")
    by_doc = {j.doc_id: j for j in js}
    assert len(js) == len(pairs) and len(by_doc) == len(pairs), "every pair exactly once"
    assert by_doc["d0"].grade == 3 and by_doc["d0"].probs[3] == pytest.approx(0.7)
    assert by_doc["d1"].grade == 1 and by_doc["d7"].grade == 1, "429 + Retry-After is retried"
    failed = {d for d, j in by_doc.items() if j.grade is None}
    assert failed == {"d2", "d3", "d4", "d5"}
    assert by_doc["d4"].error == "unparseable answer" and "[repair]" in by_doc["d4"].raw
    assert by_doc["d6"].probs is not None, "one reply without logprobs must not switch the run to text grading"
    assert "InternalServerError" in by_doc["d2"].error and "Timeout" in by_doc["d3"].error
    assert stats["failures"] == len(failed)
    assert len((tmp_path / "teacher.failures.jsonl").read_text().splitlines()) == len(failed)
    assert server.max_inflight <= 3
    assert all(h == f"Bearer {KEY}" for h in server.auth_headers)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f"API key leaked into {f.name}"


def test_cache_hits_send_no_request_and_failures_are_retried(tmp_path):
    pairs = make_pairs(["", "", "FAIL"])
    with FakeOpenAI() as server:
        Judge(backend(server.url), cache=tmp_path / "c.sqlite").judge(pairs, show_progress=False)
        sent = len(server.requests)
        again = Judge(backend(server.url), cache=tmp_path / "c.sqlite").judge(pairs, show_progress=False)
    assert sum(j.cached for j in again) == 2
    assert len(server.requests) - sent == 3, "only the failed pair is asked again (1 try + 2 retries)"


def test_generation_fallback_when_server_has_no_logprobs(tmp_path):
    pairs = make_pairs(["", "GARBAGE"])
    with FakeOpenAI(logprobs=False, grade_for=lambda t: 2) as server:
        js = {j.doc_id: j for j in Judge(backend(server.url)).judge(pairs, show_progress=False)}
    assert js["d0"].grade == 2 and js["d0"].probs is None
    assert js["d1"].grade is None and js["d1"].error == "unparseable answer" and "[repair]" in js["d1"].raw


def test_a_grade_offered_as_two_tokens_counts_both(tmp_path):
    with FakeOpenAI() as server:
        (j,) = Judge(backend(server.url)).judge(make_pairs(["SPLIT"]), show_progress=False)
    # "2" (0.35) and " 2" (0.25) are one answer, more likely than "1" (0.4)
    assert j.grade == 2 and j.probs == pytest.approx([0.0, 0.4, 0.6, 0.0]) and j.mass == pytest.approx(1.0)


NEWER_MODEL = frozenset({"max_tokens", "temperature", "logprobs"})


def test_a_model_that_refuses_max_tokens_temperature_and_logprobs_is_graded_from_text(tmp_path, caplog):
    pairs = make_pairs(["", "", "", "", ""])
    with FakeOpenAI(refuses=NEWER_MODEL, grade_for=lambda t: 3 if "passage 0" in t else 1) as server:
        judge = Judge(backend(server.url), concurrency=1)
        js = {j.doc_id: j for j in judge.judge(pairs, show_progress=False)}
    assert js["d0"].grade == 3 and all(js[f"d{i}"].grade == 1 for i in range(1, 5))
    assert all(j.error is None and j.probs is None for j in js.values())
    # each refusal learnt once, on the first pair's logprobs request (max_tokens, temperature, then logprobs);
    # from then on one text request a pair, and no logprobs request
    assert [r.get("logprobs", False) for r in server.requests] == [True] * 3 + [False] * 5
    last = server.requests[-1]
    assert "max_tokens" not in last and last["max_completion_tokens"] == 16 and "temperature" not in last
    refusals = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert len(refusals) == 2 and "max_completion_tokens" in refusals[0] and "temperature" in refusals[1]
    assert any("grading from generated text" in r.getMessage() for r in caplog.records)


def test_an_older_server_still_gets_max_tokens(tmp_path):
    with FakeOpenAI(logprobs=False) as server:
        Judge(backend(server.url)).judge(make_pairs([""]), show_progress=False)
    assert all(r["max_tokens"] in (1, 16) and "max_completion_tokens" not in r for r in server.requests)
    assert all(r["temperature"] == 0 and "reasoning_effort" not in r for r in server.requests)


def test_a_reasoning_model_that_spends_its_budget_thinking_is_a_clear_error_until_told_to_answer(tmp_path, monkeypatch):
    from qrelkit.errors import QrelkitError

    pairs = make_pairs(["", ""])
    with FakeOpenAI(refuses=NEWER_MODEL, thinks=200) as server:
        with pytest.raises(QrelkitError, match="QRELKIT_REASONING_EFFORT=minimal"):
            Judge(backend(server.url)).judge(pairs, show_progress=False)
        monkeypatch.setenv("QRELKIT_REASONING_EFFORT", "minimal")
        js = Judge(backend(server.url)).judge(pairs, show_progress=False)
    assert [j.grade for j in js] == [2, 2]
    assert server.requests[-1]["reasoning_effort"] == "minimal"


@pytest.mark.parametrize(("status", "says"), [(401, "refused the API key"), (404, "check the model"), (403, "may not")])
def test_a_wrong_key_or_model_stops_the_run_at_its_first_request(tmp_path, status, says):
    from qrelkit.errors import QrelkitError

    with FakeOpenAI(status=status) as server, pytest.raises(QrelkitError, match=says) as e:
        Judge(backend(server.url)).judge(make_pairs([""] * 20), show_progress=False)
    assert len(server.requests) == 1 and KEY not in str(e.value)  # not 20 pairs, each retried, each failed


def test_a_server_that_cannot_be_reached_stops_the_run_with_one_error():
    import socket

    from qrelkit.errors import QrelkitError

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = OpenAIBackend(f"http://127.0.0.1:{port}/v1#fake-model", timeout=1.0, max_retries=0)
    with pytest.raises(QrelkitError, match="cannot reach the server"):
        Judge(dead).judge(make_pairs([""] * 20), show_progress=False)


def test_synth_over_http_keeps_requests_in_flight_and_writes_the_queries_of_one_at_a_time(small_corpus):
    from qrelkit.synth import synthesize

    def reply(text: str) -> str:
        word = text.rsplit("Document:", 1)[-1].split()[0].lower()  # the passage's first word
        return f"keyword: {word} policy\nquestion: what does {word} say?\nshort: {word} rules"

    with FakeOpenAI(grade_for=reply, delay=0.2) as server:
        one, _ = synthesize(small_corpus, backend(server.url), n_seeds=6, concurrency=1, show_progress=False)
        assert server.max_inflight == 1
        many, stats = synthesize(small_corpus, backend(server.url), n_seeds=6, concurrency=3, show_progress=False)
        assert server.max_inflight == 3 and stats["calls"] == 6
    assert [q.model_dump() for q in many] == [q.model_dump() for q in one] and len(one) == 18


def test_concurrency_is_bounded(tmp_path):
    with FakeOpenAI(delay=0.2) as server:
        Judge(backend(server.url), concurrency=4).judge(make_pairs([""] * 12), show_progress=False)
    assert 1 < server.max_inflight <= 4


def test_the_cli_says_each_refusal_once_and_logs_no_request_lines(tmp_path):
    import json
    import os
    import subprocess
    import sys

    pairs = make_pairs([""] * 12)
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p.model_dump()) + "\n" for p in pairs))
    with FakeOpenAI(refuses=NEWER_MODEL, delay=0.05) as server:
        cmd = [sys.executable, "-m", "qrelkit", "judge", "pairs.jsonl", "-o", "t.qrels", "--llm"]
        r = subprocess.run(
            [*cmd, f"{server.url}#gpt-5.4-mini", "--concurrency", "4"],
            cwd=tmp_path,
            env={**os.environ, "QRELKIT_PROGRESS": "0"},
            capture_output=True,
            text=True,
        )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["graded"] == 12
    err = " ".join(r.stderr.split())  # rich wraps log lines
    assert "HTTP Request" not in err  # openai 3.x logs each request through httpx2
    assert err.count("refuses max_tokens") == 1 and err.count("refuses temperature") == 1
    assert err.count("grading from generated text instead") == 1  # four threads, one warning


def test_sigkill_midway_then_the_same_command_resumes_labelling_every_pair_once(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from qrelkit.io import read_qrels

    pairs = make_pairs([""] * 30)
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p.model_dump()) + "\n" for p in pairs))
    env = {**os.environ, "QRELKIT_PROGRESS": "0"}

    def judge(server: FakeOpenAI, out: str) -> subprocess.Popen:
        # no --cache: the default cache beside the output is what makes the rerun resume
        cmd = [
            sys.executable,
            "-m",
            "qrelkit",
            "judge",
            "pairs.jsonl",
            "-o",
            out,
            "--llm",
            f"{server.url}#fake-model",
            "--concurrency",
            "1",
        ]
        return subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{out}.log").open("w")
        )

    import re

    def grade(text: str) -> int:
        return int(re.search(r"passage (\d+)", text).group(1)) % 4

    with FakeOpenAI(grade_for=grade, delay=0.05) as server:
        proc = judge(server, "teacher.qrels")
        deadline = time.time() + 60
        while len(server.requests) < 12 and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = len(server.requests)
        assert 12 <= before < 30, "the run must be killed midway"
        assert not (tmp_path / "teacher.qrels").exists()
        assert (tmp_path / "teacher.cache.sqlite").exists()
        assert judge(server, "teacher.qrels").wait() == 0  # the same command again
        resumed_requests = len(server.requests) - before
        assert judge(server, "clean.qrels").wait() == 0
    # At most the one request in flight at the kill is sent again; completed ones come from the cache.
    assert before + resumed_requests <= 30 + 1
    resumed, clean = read_qrels(tmp_path / "teacher.qrels"), read_qrels(tmp_path / "clean.qrels")
    assert resumed == clean and len(resumed) == 30
    lines = (tmp_path / "teacher.judgments.jsonl").read_text().splitlines()
    assert len(lines) == 30 and len({(json.loads(x)["qid"], json.loads(x)["doc_id"]) for x in lines}) == 30
