from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qrelkit.errors import QrelkitError
from qrelkit.pipeline import run_pipeline

ENV = {**os.environ, "QRELKIT_PROGRESS": "0"}


def qrelkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qrelkit", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def test_cli_user_errors_are_one_line_without_traceback(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    r = qrelkit("ingest", str(bad), "-o", str(tmp_path / "d.parquet"), cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "c.jsonl:2 [id]: duplicate document id 'a'" in " ".join(r.stderr.split())
    r = qrelkit("label", str(tmp_path / "nope.jsonl"), "-m", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_pipeline_skips_unchanged_stages_and_reruns_changed(tmp_path, small_corpus, monkeypatch):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": d.doc_id, "text": d.text}) + "\n" for d in small_corpus))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"qid": "a", "text": "vpn client", "seed_doc_id": "vpn"}) + "\n")
    cfg = {
        "run_dir": "run",
        "stages": [
            {"ingest": {"corpus": str(corpus), "out": "docs.parquet"}},
            {
                "mine": {
                    "queries": str(tmp_path / "queries.jsonl"),
                    "docs": "docs.parquet",
                    "out": "pairs.parquet",
                    "k": 2,
                }
            },
        ],
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    first = run_pipeline(tmp_path / "pipeline.yaml")
    assert first["stages"]["mine"]["pairs"] >= 1 and "skipped" not in first["stages"]["ingest"]
    second = run_pipeline(tmp_path / "pipeline.yaml")
    assert second["stages"]["ingest"]["skipped"] and second["stages"]["mine"]["skipped"]
    cfg["stages"][1]["mine"]["k"] = 3  # config change: rerun mine only
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    third = run_pipeline(tmp_path / "pipeline.yaml")
    assert third["stages"]["ingest"].get("skipped") and not third["stages"]["mine"].get("skipped")
    import qrelkit.pipeline as pipeline_module

    monkeypatch.setitem(pipeline_module.STAGES, "mine", _with_default(pipeline_module.mine_file, n_random=0))
    changed_default = run_pipeline(tmp_path / "pipeline.yaml")
    assert changed_default["stages"]["ingest"].get("skipped") and not changed_default["stages"]["mine"].get("skipped")
    monkeypatch.undo()
    with corpus.open("a") as fh:  # input change: both rerun
        fh.write(json.dumps({"id": "new", "text": "a new vpn document"}) + "\n")
    fourth = run_pipeline(tmp_path / "pipeline.yaml")
    assert not fourth["stages"]["ingest"].get("skipped") and not fourth["stages"]["mine"].get("skipped")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    cfg["stages"][1]["mine"]["kk"] = 3
    with pytest.raises(QrelkitError, match="stage 'mine': unknown setting"):
        run_pipeline(cfg | {"run_dir": str(tmp_path / "run")})
    assert set(manifest["stages"]) == {"ingest", "mine"}


def _with_default(fn, **defaults):
    """The same stage function with other default values (as after an upgrade that changes a default)."""
    import functools
    import inspect

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **{**defaults, **kwargs})

    sig = inspect.signature(fn)
    wrapper.__signature__ = sig.replace(
        parameters=[p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()]
    )
    return wrapper


def test_pipeline_config_is_checked_whole_before_any_stage_runs(tmp_path, monkeypatch):
    import functools

    from qrelkit import pipeline

    ran: list[str] = []
    real = pipeline.STAGES["ingest"]

    @functools.wraps(real)  # keeps the stage's signature, which the check reads
    def spy(**kw):
        ran.append("ingest")
        return {}

    monkeypatch.setitem(pipeline.STAGES, "ingest", spy)
    cfg = {
        "run_dir": "run",
        "stages": [
            {"ingest": {"corpus": "c.jsonl", "out": "docs.parquet"}},
            {"mine": {"queries": "q.jsonl", "docs": "docs.parquet", "out": "p.parquet", "kk": 3}},
        ],
    }
    with pytest.raises(QrelkitError, match=r"stage 'mine': unknown setting\(s\) kk \(valid: queries, docs, out, k, "):
        run_pipeline(cfg)
    assert ran == [], "a typo in a later stage is caught before the first stage runs"
    cfg["stages"][1]["mine"] = {"queries": "q.jsonl", "out": "p.parquet"}
    with pytest.raises(QrelkitError, match="stage 'mine': missing a required argument: 'docs'"):
        run_pipeline(cfg)
    with pytest.raises(QrelkitError, match=r"unknown key\(s\) stage \(valid: run_dir, llm, cache, stages\)"):
        run_pipeline({"stage": [], "stages": []})
    # the CLI's --random is accepted under its own name
    plan = pipeline.plan_stages(
        {"stages": [{"mine": {"queries": "q", "docs": "d", "out": "p", "random": 4}}]}, tmp_path
    )
    assert plan[0][2]["n_random"] == 4


def test_cli_run_reports_a_yaml_syntax_error_on_one_line(tmp_path):
    (tmp_path / "pipeline.yaml").write_text("run_dir: run\nstages:\n  - ingest: {corpus: c.jsonl, out: d.parquet\n")
    r = qrelkit("run", "pipeline.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "pipeline.yaml: not valid YAML (line 4, column 1)" in r.stderr


def test_bench_and_experiment_say_what_data_they_need(tmp_path):
    for command in ("bench", "experiment"):
        r = qrelkit(command, "--data", str(tmp_path / "nowhere"), cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        text = " ".join(r.stderr.split())
        assert "benchmark data 'llmjudge-trecdl2023' not found" in text and "pairs/test-open.tsv" in text


def test_every_cli_option_and_argument_has_help_and_version_prints():
    import typer.main

    from qrelkit import __version__
    from qrelkit.cli import app

    cli = typer.main.get_command(app)
    missing = [(n, p.name) for n, sub in cli.commands.items() for p in sub.params if not getattr(p, "help", None)]
    assert missing == []
    r = subprocess.run([sys.executable, "-m", "qrelkit", "--version"], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == f"qrelkit {__version__}"
    # flags take no value: their help rows show none (typer would write <bool>); valued options keep their type
    r = subprocess.run(
        [sys.executable, "-m", "qrelkit", "experiment", "--help"],
        env={**ENV, "COLUMNS": "100"},
        capture_output=True,
        text=True,
    )
    assert "--no-stack" in r.stdout and "<bool>" not in r.stdout and "<int>" in r.stdout


def test_evaluate_versus_from_the_cli_and_from_pipeline_yaml(tmp_path):
    human = "".join(f"q{q} 0 d{d} {(q + d) % 4}\n" for q in range(6) for d in range(8))
    good = "".join(f"q{q} 0 d{d} {(q + d) % 4}\n" for q in range(6) for d in range(8))
    poor = "".join(f"q{q} 0 d{d} {(q * d) % 4}\n" for q in range(6) for d in range(8))
    for name, text in (("human", human), ("good", good), ("poor", poor)):
        (tmp_path / f"{name}.qrels").write_text(text)
    r = qrelkit(
        "evaluate",
        "good.qrels",
        "--human",
        "human.qrels",
        "--versus",
        "poor.qrels",
        "--bootstrap",
        "50",
        "-o",
        "m.json",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "paired on 48 pairs of 6 queries" in r.stdout
    diff = json.loads((tmp_path / "m.json").read_text())["versus"]["point"]["labels - reference"]["kappa"]
    assert diff > 0.5
    cfg = {
        "run_dir": str(tmp_path),
        "stages": [
            {"evaluate": {"labels": "good.qrels", "human": "human.qrels", "versus": "poor.qrels", "bootstrap": 50}}
        ],
    }
    result = run_pipeline(cfg)["stages"]["evaluate"]
    assert result["versus"]["point"]["labels - reference"]["kappa"] == pytest.approx(diff)


def test_an_empty_input_gets_the_same_one_line_error_in_every_command(tmp_path):
    # (label needs a student folder first; its empty-input case is in test_label_stream)
    for name in ("empty.jsonl", "empty.qrels"):
        (tmp_path / name).write_text("\n")
    (tmp_path / "ok.qrels").write_text("q1 0 d1 2\n")
    cases = {
        "ingest": (["ingest", "empty.jsonl", "-o", "d.parquet"], "documents with text"),
        "synth": (["synth", "empty.jsonl", "-o", "q.jsonl"], "documents with text"),
        "mine": (["mine", "empty.jsonl", "empty.jsonl", "-o", "p.parquet"], "queries"),
        "judge": (["judge", "empty.jsonl", "-o", "t.qrels", "--dry-run"], "pairs"),
        "distill": (["distill", "empty.jsonl", "ok.qrels", "-o", "m"], "pairs"),
        "distill teacher": (["distill", "ok.qrels", "empty.qrels", "-o", "m"], "judgments"),
        "evaluate": (["evaluate", "empty.qrels", "--human", "ok.qrels"], "judgments"),
        "evaluate human": (["evaluate", "ok.qrels", "--human", "empty.qrels"], "judgments"),
    }
    for case, (args, what) in cases.items():
        r = qrelkit(*args, cwd=tmp_path)
        assert r.returncode == 2, (case, r.stderr)
        assert r.stderr.count("\n") == 1 and f": empty input: no {what}" in r.stderr, (case, r.stderr)


def test_a_pair_graded_twice_is_an_error_unless_allowed_then_the_last_grade_counts(tmp_path):
    (tmp_path / "human.qrels").write_text("q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 1\n")
    (tmp_path / "dup.qrels").write_text("q1 0 d1 0\nq1 0 d2 0\nq2 0 d1 1\nq1 0 d1 2\n")
    r = qrelkit("evaluate", "dup.qrels", "--human", "human.qrels", "--bootstrap", "0", cwd=tmp_path)
    assert r.returncode == 2 and "dup.qrels:4: pair (q1, d1) is graded twice (first on line 1)" in r.stderr
    r = qrelkit(
        "evaluate",
        "dup.qrels",
        "--human",
        "human.qrels",
        "--bootstrap",
        "0",
        "-o",
        "m.json",
        "--allow-duplicates",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "1 pair(s) graded more than once; the last grade of each was kept" in " ".join(r.stderr.split())
    assert json.loads((tmp_path / "m.json").read_text())["accuracy"] == 1.0  # the last grade (2) was kept
