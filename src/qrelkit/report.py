"""The evaluation report: several labelers (teacher, students, other LLM judges) against human grades.

Writes ``report.json`` (every figure), ``report.md`` (for terminals), one self-contained ``report.html``
(tables and plots embedded, opens in any browser), the plots as PNG (a confusion matrix per labeler and
one calibration plot) and ``per_query.csv`` (where each labeler fails).

>>> from qrelkit.io import read_qrels                                          # doctest: +SKIP
>>> report = build_report({"teacher": read_qrels("t.qrels"), "student": read_qrels("s.qrels")},
...                       read_qrels("human.qrels"), reference="teacher")      # doctest: +SKIP
>>> write_report(report, "report/")                                            # doctest: +SKIP
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QrelkitError
from .evaluate import (
    HEADLINE,
    REPORT_METRICS,
    bootstrap_intervals,
    format_intervals,
    format_table,
    format_value,
    grades_of,
    group_by_query,
    ndcg_at_10,
    pairwise_accuracy,
    point_metrics,
)
from .io import Qrels
from .records import GRADES
from .system_ranking import format_system_ranking, ranking_tables
from .tables import html_table, markdown_table

INTERVAL_METRICS = REPORT_METRICS  # the report's columns (one list, in evaluate.py)


def build_report(
    labelers: Mapping[str, Qrels],
    human: Qrels,
    *,
    reference: str | None = None,
    queries: Mapping[str, str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    title: str = "qrelkit evaluation report",
    notes: Sequence[str] = (),
    point_only: Mapping[str, Qrels] | None = None,
    system_ranking: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of every labeler on the pairs that all of them and the humans graded (so rows are comparable),
    95% intervals resampling queries, the paired difference of each labeler minus ``reference``, and
    per-query agreement. ``queries`` (qid → text) only labels the per-query table. ``point_only`` labelers
    (say, 30 other LLM judges) get a row in the metrics table but no interval, plot or per-query column.
    ``system_ranking`` (:func:`qrelkit.system_ranking.compare_system_rankings`) adds its section."""
    if not labelers:
        raise QrelkitError("no labelers to report on")
    if reference is not None and reference not in labelers:
        raise QrelkitError(f"reference {reference!r} is not one of the labelers: {', '.join(labelers)}")
    common = set(human)
    for qrels in labelers.values():
        common &= set(qrels)
    keys = sorted(common)
    if not keys:
        raise QrelkitError("the labelers and the human qrels share no (qid, doc_id) pair")
    y_hum = grades_of(human, keys)
    ys = {name: grades_of(qrels, keys) for name, qrels in labelers.items()}
    others = {}
    for name, qrels in (point_only or {}).items():
        if set(keys) <= set(qrels):
            others[name] = grades_of(qrels, keys)
    metrics = {}
    for name, y in {**ys, **others}.items():
        m = point_metrics(keys, y, y_hum)
        m["grade_counts"] = [int((y == g).sum()) for g in GRADES]
        metrics[name] = m
    intervals = (
        bootstrap_intervals(keys, ys, y_hum, n=bootstrap, seed=seed, reference=reference, metrics=INTERVAL_METRICS)
        if bootstrap
        else {}
    )
    differences = {}
    if reference is not None:
        for name in ys:
            if name != reference:
                differences[f"{name} - {reference}"] = {
                    k: metrics[name][k] - metrics[reference][k] for k in INTERVAL_METRICS
                }
    return {
        "title": title,
        "notes": list(notes),
        "pairs": len(keys),
        "queries": len({q for q, _ in keys}),
        "human_grade_counts": [int((y_hum == g).sum()) for g in GRADES],
        "reference": reference,
        "bootstrap": bootstrap,
        "labelers": list(ys),
        "metrics": metrics,
        "intervals": intervals,
        "differences": differences,
        "per_query": per_query(keys, ys, y_hum, queries or {}),
        "system_ranking": system_ranking,
    }


def per_query(
    keys: Sequence[tuple[str, str]], ys: Mapping[str, np.ndarray], y_hum: np.ndarray, queries: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One row per query: its pairs, human grade mix, and per labeler accuracy, mean absolute error,
    pairwise accuracy and nDCG@10."""
    rows = []
    for qid, idx in sorted(group_by_query(keys).items()):
        ks = [keys[i] for i in idx]
        h = y_hum[idx]
        row: dict[str, Any] = {"qid": qid, "query": queries.get(qid, ""), "pairs": len(idx)}
        row["human_mean"] = float(h.mean())
        for name, y in ys.items():
            yq = y[idx]
            row[f"{name}:accuracy"] = float((yq == h).mean())
            row[f"{name}:mae"] = float(np.abs(yq - h).mean())
            row[f"{name}:pairwise_accuracy"] = pairwise_accuracy(ks, yq, h)
            row[f"{name}:ndcg@10"] = ndcg_at_10(ks, yq, h) if h.max() > 0 else float("nan")
        rows.append(row)
    return rows


# ---------------------------------------------------------------- writing


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md, report.html, the PNG plots and per_query.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    plots = write_plots(report, out)
    paths.update(plots)
    paths["per_query"] = out / "per_query.csv"
    _write_per_query_csv(report["per_query"], paths["per_query"])
    paths["json"].write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    paths["markdown"].write_text(format_markdown(report, plots), encoding="utf-8")
    paths["html"].write_text(format_html(report, plots), encoding="utf-8")
    return paths


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_plots(report: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """A row-normalised confusion matrix per labeler and one calibration plot (mean human grade per grade
    the labeler gave; a calibrated labeler sits on the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    main = {name: report["metrics"][name] for name in report["labelers"]}
    for name, m in main.items():
        cm = np.asarray(m["confusion"], dtype=float)
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=100)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in GRADES:
            for j in GRADES:
                colour = "black" if share[i, j] < 0.6 else "white"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=colour)
        ax.set_xticks(list(GRADES))
        ax.set_yticks(list(GRADES))
        ax.set_xlabel(f"{name} grade")
        ax.set_ylabel("human grade")
        ax.set_title(f"κ {m['kappa']:.2f} · quad κ {m['kappa_quadratic']:.2f}", fontsize=9)
        fig.tight_layout()
        path = out / f"confusion_{_slug(name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[f"confusion:{name}"] = path
    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=100)
    ax.plot([0, 3], [0, 3], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, m in main.items():
        cm = np.asarray(m["confusion"], dtype=float)
        given = cm.sum(axis=0)
        mean_human = (cm * np.arange(4)[:, None]).sum(axis=0) / np.maximum(given, 1)
        shown = given > 0
        ax.plot(np.arange(4)[shown], mean_human[shown], marker="o", label=name)
    ax.set_xlabel("grade given by the labeler")
    ax.set_ylabel("mean human grade of those pairs")
    ax.set_xticks(list(GRADES))
    ax.set_ylim(0, 3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["calibration"] = out / "calibration.png"
    fig.savefig(paths["calibration"])
    plt.close(fig)
    return paths


def _write_per_query_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _interval_rows(report: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """(name, cells) per labeler and per difference: 'point [lo, hi]' for each interval metric."""
    rows = []
    points = {**report["metrics"], **report["differences"]}
    for name, ci in report["intervals"].items():
        if name not in points:
            continue
        cells = [
            f"{format_value(points[name][k])} [{format_value(ci[k][0])}, {format_value(ci[k][1])}]"
            for k in INTERVAL_METRICS
        ]
        rows.append((name, cells))
    return rows


def _worst_queries(report: Mapping[str, Any], limit: int = 10) -> tuple[str, list[Mapping[str, Any]]]:
    """The labeler the per-query table is sorted by (the first that is not the reference) and its worst queries."""
    names = [n for n in report["labelers"] if n != report["reference"]] or list(report["labelers"])
    focus = names[0]
    rows = sorted(report["per_query"], key=lambda r: _nan_last(r[f"{focus}:pairwise_accuracy"]))
    return focus, rows[:limit]


def _nan_last(v: float) -> float:
    return math.inf if math.isnan(v) else v


def format_markdown(report: Mapping[str, Any], plots: Mapping[str, Path] | None = None) -> str:
    lines = [f"# {report['title']}", ""]
    lines += [f"- {n}" for n in report["notes"]]
    lines += [
        f"- {report['pairs']} pairs of {report['queries']} queries graded by every labeler and by humans "
        f"(human grades 0/1/2/3: {'/'.join(map(str, report['human_grade_counts']))})",
        "",
        "## Agreement with human grades",
        "",
        format_table(report["metrics"]),
        "",
    ]
    if report["intervals"]:
        lines += [
            f"## 95% intervals ({report['bootstrap']} resamples of queries)"
            + (f"; differences are paired, labeler − {report['reference']}" if report["reference"] else ""),
            "",
            format_intervals(report["intervals"], {**report["metrics"], **report["differences"]}),
            "",
        ]
    if report.get("system_ranking"):
        lines += ["## Do the labels rank systems as the human grades do?", ""]
        lines += [format_system_ranking(report["system_ranking"]), ""]
    focus, worst = _worst_queries(report)
    names = list(report["labelers"])
    lines += [f"## Queries where {focus} agrees least (pairwise accuracy)", ""]
    header = ["qid", "query", "pairs", *(f"{n} pair acc" for n in names)]
    rows = (
        [r["qid"], r["query"][:60], r["pairs"], *(format_value(r[f"{n}:pairwise_accuracy"]) for n in names)]
        for r in worst
    )
    lines.append(markdown_table(header, rows))
    if plots:
        lines += ["", "Plots: " + ", ".join(p.name for p in plots.values())]
    return "\n".join(lines) + "\n"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def format_html(report: Mapping[str, Any], plots: Mapping[str, Path]) -> str:
    """One HTML file with everything inline (plots as data URIs): mail it, open it offline."""
    e = html.escape
    metrics = [[name, *(format_value(m.get(k, "")) for k, _ in HEADLINE)] for name, m in report["metrics"].items()]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(report['title'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th:first-child{text-align:left}.plots img{margin:4px;border:1px solid #eee}</style>",
        "</head><body>",
        f"<h1>{e(report['title'])}</h1><ul>",
        *(f"<li>{e(n)}</li>" for n in report["notes"]),
        f"<li>{report['pairs']} pairs of {report['queries']} queries graded by every labeler and by humans "
        f"(human grades 0/1/2/3: {'/'.join(map(str, report['human_grade_counts']))})</li></ul>",
        "<h2>Agreement with human grades</h2>",
        html_table(["labeler", *(h for _, h in HEADLINE)], metrics),
    ]
    if report["intervals"]:
        ref = report["reference"]
        parts.append(
            f"<h2>95% intervals ({report['bootstrap']} resamples of queries)</h2>"
            + (f"<p>Differences are paired: labeler − {e(ref)} on the same resampled queries.</p>" if ref else "")
        )
        rows = [[n, *cells] for n, cells in _interval_rows(report)]
        parts.append(html_table(["labeler", *INTERVAL_METRICS], rows))
    if report.get("system_ranking"):
        about, tables = ranking_tables(report["system_ranking"])
        parts += ["<h2>Do the labels rank systems as the human grades do?</h2>", f"<p>{e(about)}</p>"]
        parts += [html_table(header, rows) for header, rows in tables]
    parts.append("<h2>Confusion matrices (rows: human grade; colour: share of the row)</h2><div class='plots'>")
    parts += [_img(p, k) for k, p in plots.items() if k.startswith("confusion:")]
    parts.append("</div><h2>Calibration</h2><div class='plots'>")
    if "calibration" in plots:
        parts.append(_img(plots["calibration"], "calibration"))
    focus, _ = _worst_queries(report)
    names = list(report["labelers"])
    parts.append(f"</div><h2>Per query (sorted by {e(focus)}'s pairwise accuracy, worst first)</h2>")
    qhead = "".join(f"<th>{e(n)} pair acc</th><th>{e(n)} nDCG@10</th>" for n in names)
    parts.append(f"<table><tr><th>qid</th><th>query</th><th>pairs</th><th>human mean</th>{qhead}</tr>")
    for r in sorted(report["per_query"], key=lambda r: _nan_last(r[f"{focus}:pairwise_accuracy"])):
        cells = "".join(
            f"<td>{format_value(r[f'{n}:pairwise_accuracy'])}</td><td>{format_value(r[f'{n}:ndcg@10'])}</td>"
            for n in names
        )
        parts.append(
            f"<tr><th>{e(r['qid'])}</th><td style='text-align:left'>{e(r['query'])}</td><td>{r['pairs']}</td>"
            f"<td>{format_value(r['human_mean'])}</td>{cells}</tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)
