from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qrelkit.errors import InputError
from qrelkit.io import read_corpus, read_pairs, read_qrels, read_queries, write_jsonl, write_qrels


def test_reads_jsonl_with_custom_columns(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"key": "a", "body": "alpha text"}\n\n{"key": "b", "body": "beta"}\n')
    docs = read_corpus(p, id_field="key", text_field="body")
    assert [(d.doc_id, d.text) for d in docs] == [("a", "alpha text"), ("b", "beta")]


def test_autodetects_columns_in_csv_tsv_parquet(tmp_path):
    (tmp_path / "c.csv").write_text('id,text\n1,"hello, world"\n2,second\n')
    (tmp_path / "c.tsv").write_text("docid\tcontents\nx\tone\ny\ttwo\n")
    pq.write_table(pa.table({"pid": ["p1"], "passage": ["parquet text"]}), tmp_path / "c.parquet")
    assert [d.text for d in read_corpus(tmp_path / "c.csv")] == ["hello, world", "second"]
    assert [d.doc_id for d in read_corpus(tmp_path / "c.tsv")] == ["x", "y"]
    assert read_corpus(tmp_path / "c.parquet")[0].text == "parquet text"


def test_reads_folder_and_strips_html(tmp_path):
    (tmp_path / "a.txt").write_text("plain text doc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text(
        "<html><head><title>T</title><style>x{}</style></head><body><p>Hi &amp; bye</p><script>1</script></body></html>"
    )
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    docs = {d.doc_id: d for d in read_corpus(tmp_path)}
    assert set(docs) == {"a.txt", "sub/b.html"}
    assert docs["sub/b.html"].title == "T"
    assert "Hi & bye" in docs["sub/b.html"].text and "x{}" not in docs["sub/b.html"].text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', r"c\.jsonl:2 \[id\]: duplicate document id 'a'"),
        ('{"id": "a", "text": "x"}\n{not json}\n', r"c\.jsonl:2: malformed JSON"),
        ('{"id": "a", "text": 5}\n', r"c\.jsonl:1 \[text\]: text must be a string"),
        ('{"ident": "a", "words": "x"}\n', r"cannot find a id column"),
        ('{"text": "x"}\n{"id": "", "text": "y"}\n', r"cannot find a id column"),
    ],
)
def test_bad_corpus_lines_name_file_line_and_field(tmp_path, content, message):
    p = tmp_path / "c.jsonl"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        read_corpus(p)


def test_unknown_column_and_missing_file(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n')
    with pytest.raises(InputError, match=r"no text column 'body'"):
        read_corpus(p, text_field="body")
    with pytest.raises(InputError, match="no such file"):
        read_corpus(tmp_path / "missing.jsonl")


def test_non_utf8_is_an_error_unless_skipped(tmp_path, caplog):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"c\.jsonl:2: not UTF-8"):
        read_corpus(p)
    assert [d.doc_id for d in read_corpus(p, skip_bad=True)] == ["a"]
    assert "skipped 1 malformed" in caplog.text


def test_files_with_a_byte_order_mark_read_as_without_it(tmp_path):
    bom = b"\xef\xbb\xbf"  # Excel's "CSV UTF-8", Notepad
    (tmp_path / "c.csv").write_bytes(bom + b"id,text\n1,Reset the VPN token\n")
    (tmp_path / "c.jsonl").write_bytes(bom + b'{"id": "1", "text": "Reset the VPN token"}\n')
    for name in ("c.csv", "c.jsonl"):
        assert [(d.doc_id, d.text) for d in read_corpus(tmp_path / name)] == [("1", "Reset the VPN token")], name
    (tmp_path / "q.qrels").write_bytes(bom + b"q1 0 d1 2\n")
    assert read_qrels(tmp_path / "q.qrels") == {("q1", "d1"): 2}
    (tmp_path / "q.jsonl").write_bytes(bom + b'{"qid": "q1", "text": "vpn"}\n')
    assert read_queries(tmp_path / "q.jsonl")[0]["qid"] == "q1"
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_bytes(bom + "Caf\u00e9 hours".encode())
    (folder / "b.txt").write_bytes("Caf\u00e9 menu".encode("utf-16"))  # PowerShell's default: UTF-16 with a mark
    assert [d.text for d in read_corpus(folder)] == ["Caf\u00e9 hours", "Caf\u00e9 menu"]
    (tmp_path / "u16.tsv").write_bytes("id\ttext\n2\tCaf\u00e9 menu\n".encode("utf-16"))
    assert [d.text for d in read_corpus(tmp_path / "u16.tsv")] == ["Caf\u00e9 menu"]
    (tmp_path / "u16.jsonl").write_bytes('{"id": "1", "text": "x"}\n'.encode("utf-16"))
    with pytest.raises(InputError, match=r"u16\.jsonl:1: UTF-16 text \(byte-order mark\): save it as UTF-8"):
        read_corpus(tmp_path / "u16.jsonl")


def test_empty_documents_are_skipped_with_a_count(tmp_path, caplog):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "text": "  "}\n{"id": "b", "text": "real"}\n')
    assert [d.doc_id for d in read_corpus(p)] == ["b"]
    assert "skipped 1 empty" in caplog.text


def test_qrels_roundtrip_and_errors(tmp_path):
    p = tmp_path / "q.qrels"
    write_qrels(p, [("q1", "d1", 3), ("q1", "d2", 0)])
    assert read_qrels(p) == {("q1", "d1"): 3, ("q1", "d2"): 0}
    (tmp_path / "bad.qrels").write_text("q1 0 d1 2\nq1 0 d2 high\n")
    with pytest.raises(InputError, match=r"bad\.qrels:2 \[grade\]"):
        read_qrels(tmp_path / "bad.qrels")
    (tmp_path / "float.qrels").write_text("q1 0 d1 1.\n")
    assert read_qrels(tmp_path / "float.qrels") == {("q1", "d1"): 1}


def test_pairs_jsonl_requires_fields(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"qid": "q", "query": "x", "doc_id": "d"}) + "\n")
    with pytest.raises(InputError, match=r"p\.jsonl:1 \[text\]: missing field"):
        read_pairs(p)


def test_gzipped_qrels_round_trip_and_are_byte_stable(tmp_path):
    import gzip

    grades = [("q1", "d1", 2), ("q1", "d2", 0), ("q2", "d9", 3)]
    assert write_qrels(tmp_path / "a.qrels", grades) == 3
    assert write_qrels(tmp_path / "a.qrels.gz", grades) == 3
    packed = (tmp_path / "a.qrels.gz").read_bytes()
    assert gzip.decompress(packed) == (tmp_path / "a.qrels").read_bytes(), "the same qrels text, compressed"
    assert read_qrels(tmp_path / "a.qrels.gz") == read_qrels(tmp_path / "a.qrels") == {(q, d): g for q, d, g in grades}
    write_qrels(tmp_path / "b.qrels.gz", grades)
    assert (tmp_path / "b.qrels.gz").read_bytes() == packed, "no time stamp: rewriting the same grades changes nothing"
    (tmp_path / "bad.qrels.gz").write_bytes(gzip.compress(b"q1 0 d1 7\n"))
    with pytest.raises(InputError, match="outside"):
        read_qrels(tmp_path / "bad.qrels.gz")


def test_qrels_grades_outside_the_scale_and_duplicates_are_errors(tmp_path, caplog):
    (tmp_path / "seven.qrels").write_text("q1 0 d1 2\nq1 0 d2 7\n")
    with pytest.raises(InputError, match=r"seven\.qrels:2 \[grade\]: grade 7 is outside 0–3"):
        read_qrels(tmp_path / "seven.qrels")
    # published label sets may use a wider scale: the benchmark loaders read them raw and clip on purpose
    assert read_qrels(tmp_path / "seven.qrels", max_grade=None)[("q1", "d2")] == 7
    (tmp_path / "dup.qrels").write_text("q1 0 d1 2\nq1 0 d2 0\nq1 0 d1 3\n")
    with pytest.raises(InputError, match=r"dup\.qrels:3: pair \(q1, d1\) is graded twice \(first on line 1\)"):
        read_qrels(tmp_path / "dup.qrels")
    assert read_qrels(tmp_path / "dup.qrels", duplicates="last")[("q1", "d1")] == 3
    assert "1 pair(s) graded more than once" in caplog.text


def test_cli_evaluate_refuses_a_grade_of_seven(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "labels.qrels").write_text("q1 0 d1 7\nq1 0 d2 0\n")
    (tmp_path / "human.qrels").write_text("q1 0 d1 3\nq1 0 d2 0\n")
    cmd = [sys.executable, "-m", "qrelkit", "evaluate", "labels.qrels", "--human", "human.qrels"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "QRELKIT_PROGRESS": "0"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "labels.qrels:1 [grade]: grade 7 is outside 0–3" in " ".join(r.stderr.split())


def test_queries_read_from_a_trec_topics_tsv(tmp_path):
    (tmp_path / "topics.tsv").write_text("1037798\twho is robert gray\n\n104861\tcost of interior concrete\n")
    assert [(q["qid"], q["text"]) for q in read_queries(tmp_path / "topics.tsv")] == [
        ("1037798", "who is robert gray"),
        ("104861", "cost of interior concrete"),
    ]
    (tmp_path / "bad.tsv").write_text("1037798 who is robert gray\n")
    with pytest.raises(InputError, match=r"bad\.tsv:1: expected 'qid<TAB>query text'"):
        read_queries(tmp_path / "bad.tsv")


def test_long_documents_are_cut_into_overlapping_passages_that_keep_their_text(tmp_path, qrelkit_here):
    from qrelkit.errors import QrelkitError
    from qrelkit.io import read_documents, split_documents
    from qrelkit.records import Document

    long = Document(doc_id="handbook", title="HR", text="one two three\nfour five six\n\nseven eight nine ten")
    short = Document(doc_id="memo", text="a short memo")
    passages = split_documents([long, short], words=4, overlap=1)
    assert [(p.doc_id, p.text) for p in passages] == [
        ("handbook#0", "one two three\nfour"),  # line breaks inside a passage are kept
        ("handbook#1", "four five six\n\nseven"),
        ("handbook#2", "seven eight nine ten"),
        ("memo", "a short memo"),
    ]
    assert all(p.title == "HR" for p in passages[:3])
    with pytest.raises(QrelkitError, match="0 <= overlap < words"):
        split_documents([long], words=4, overlap=4)
    with pytest.raises(QrelkitError, match="two passages would be called 'handbook#0'"):
        split_documents([long, Document(doc_id="handbook#0", text="x")], words=4)
    (tmp_path / "c.jsonl").write_text(
        json.dumps({"id": "handbook", "text": long.text}) + "\n" + json.dumps({"id": "memo", "text": short.text}) + "\n"
    )
    done = qrelkit_here(
        "ingest",
        str(tmp_path / "c.jsonl"),
        "-o",
        str(tmp_path / "d.parquet"),
        "--passage-words",
        "4",
        "--passage-overlap",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"documents": 2, "split": 1, "passages": 4}
    assert [d.doc_id for d in read_documents(tmp_path / "d.parquet")] == [
        "handbook#0",
        "handbook#1",
        "handbook#2",
        "memo",
    ]


def tiny_pdf(pages: list[str], title: str = "") -> bytes:
    """A minimal valid PDF: one Helvetica text line per page."""
    objs = []
    n_pages = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objs.append("<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>")
    font = 3 + 2 * n_pages
    for i, text in enumerate(pages):
        page = f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R"
        objs.append(page + f" /Resources << /Font << /F1 {font} 0 R >> >> >>")
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objs.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    info = len(objs) + 1
    objs.append(f"<< /Title ({title}) >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_a_folder_of_pdfs_reads_their_text_and_titles_and_a_damaged_one_is_named(tmp_path, caplog):
    folder = tmp_path / "docs"
    folder.mkdir()
    pages = ["Reset your VPN token from the IT portal.", "Payroll claims after the 20th are paid next month."]
    (folder / "handbook.pdf").write_bytes(tiny_pdf(pages, title="IT handbook"))
    (folder / "scan.pdf").write_bytes(tiny_pdf([""]))  # no text layer, as a scanned page
    (folder / "notes.txt").write_text("The canteen opens at noon.")
    docs = read_corpus(folder)
    assert [(d.doc_id, d.title) for d in docs] == [("handbook.pdf", "IT handbook"), ("notes.txt", "")]
    assert docs[0].text == "\n\n".join(pages) and "skipped 1 empty" in caplog.text
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf")
    with pytest.raises(InputError, match=r"broken\.pdf: unreadable PDF .*--skip-bad"):
        read_corpus(folder)
    assert [d.doc_id for d in read_corpus(folder, skip_bad=True)] == ["handbook.pdf", "notes.txt"]


def test_group_pairs_by_query_puts_each_query_together_in_bounded_buckets(tmp_path):
    from qrelkit.io import group_pairs_by_query, queries_together

    rng = np.random.default_rng(0)
    rows = [
        {"qid": f"q{q}", "query": f"query {q}", "doc_id": f"d{i}", "text": f"t{i}"}
        for i, q in enumerate(rng.integers(0, 9, size=60))
    ]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    assert not queries_together(tmp_path / "pairs.jsonl")
    for bucket_pairs in (1000, 7):  # one bucket in memory; nine buckets on disk
        dest = tmp_path / f"grouped{bucket_pairs}.parquet"
        assert group_pairs_by_query(tmp_path / "pairs.jsonl", dest, bucket_pairs=bucket_pairs) == len(rows)
        assert queries_together(dest)
        grouped = read_pairs(dest)
        assert sorted(p.doc_id for p in grouped) == sorted(r["doc_id"] for r in rows)
        for q in {r["qid"] for r in rows}:  # each query's pairs in their file order
            assert [p.doc_id for p in grouped if p.qid == q] == [r["doc_id"] for r in rows if r["qid"] == q]
        again = tmp_path / "again.parquet"
        group_pairs_by_query(tmp_path / "pairs.jsonl", again, bucket_pairs=bucket_pairs)
        assert [p.doc_id for p in read_pairs(again)] == [p.doc_id for p in grouped]  # a resumed run relies on it
    assert queries_together(tmp_path / "grouped7.parquet") and not list(tmp_path.glob("*.buckets"))
