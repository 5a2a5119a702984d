"""Readers and writers: corpora, JSONL, Parquet, TREC qrels. Errors name the file, line and field."""

from __future__ import annotations

import codecs
import csv
import gzip
import html
import io
import json
import logging
import math
import os
import re
import shutil
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import EmptyInput, InputError, QrelkitError
from .records import Document, Pair, Qrels

log = logging.getLogger("qrelkit")

ID_FIELDS = ("doc_id", "docid", "id", "pid", "_id")
TEXT_FIELDS = ("text", "contents", "content", "body", "passage")
FOLDER_SUFFIXES = {".txt", ".md", ".html", ".htm", ".pdf"}


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise a one-line error if it does not exist."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or directory")
    return p


# ---------------------------------------------------------------- JSONL


# byte-order marks, UTF-32 before UTF-16 (whose mark begins UTF-32 LE's): Excel's "CSV UTF-8" and Notepad write
# UTF-8 with a mark, PowerShell and Excel's "Unicode Text" UTF-16
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _bom_encoding(head: bytes) -> str:
    """The encoding the byte-order mark at the start of ``head`` names, else UTF-8."""
    return next((name for bom, name in _BOMS if head.startswith(bom)), "utf-8")


def text_encoding(path: Path) -> str:
    """The encoding a text file's byte-order mark names (the mark is dropped on reading), else UTF-8."""
    with path.open("rb") as fh:
        return _bom_encoding(fh.read(4))


def _first_line(p: Path, raw: bytes) -> bytes:
    """A line-based file's first line without a UTF-8 byte-order mark; a UTF-16/32 file is refused plainly (its
    lines cannot be split as bytes)."""
    encoding = _bom_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        raise InputError(p, f"{encoding.upper()} text (byte-order mark): save it as UTF-8", line=1)
    return raw.removeprefix(codecs.BOM_UTF8)


def iter_jsonl(path: str | Path, *, skip_bad: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad lines raise (or are skipped and counted)."""
    p = require_file(path)
    bad = 0
    with p.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            raw = _first_line(p, raw) if n == 1 else raw
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                if not skip_bad:
                    raise InputError(p, f"not UTF-8 (byte {e.start})", line=n) from None
                bad += 1
                continue
            except json.JSONDecodeError as e:
                if not skip_bad:
                    raise InputError(p, f"malformed JSON: {e.msg}", line=n) from None
                bad += 1
                continue
            if not isinstance(obj, dict):
                if not skip_bad:
                    raise InputError(p, "expected a JSON object", line=n)
                bad += 1
                continue
            yield n, obj
    if bad:
        log.warning("%s: skipped %d malformed line(s)", p, bad)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; it replaces ``path`` only when the block succeeds, so a
    crash never leaves a half-written file where a good one was (or where a resumed run would trust it)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, p)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows atomically (temp file + rename) so a crash never leaves a half-written file."""
    n = 0
    with atomic_write(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


# ---------------------------------------------------------------- Parquet


def write_parquet(path: str | Path, rows: Sequence[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pylist(list(rows), schema=schema)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path) -> list[dict[str, Any]]:
    p = require_file(path)
    try:
        return pq.read_table(p).to_pylist()
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(p, f"not a readable Parquet file ({e})") from None


# ---------------------------------------------------------------- corpora


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """Return ``(title, visible text)`` of an HTML document."""
    parser = _TextExtractor()
    parser.feed(markup)
    return parser.title.strip(), normalize_space(html.unescape(" ".join(parser.parts)))


def normalize_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _pick_field(
    path: Path, available: Iterable[str], wanted: str | None, candidates: tuple[str, ...], what: str
) -> str:
    cols = list(available)
    if wanted is not None:
        if wanted not in cols:
            raise InputError(path, f"no {what} column {wanted!r}; columns are {cols}", field=wanted)
        return wanted
    for c in candidates:
        if c in cols:
            return c
    raise InputError(path, f"cannot find a {what} column among {cols}; pass --{what}-field")


def _table_rows(path: Path, skip_bad: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from iter_jsonl(path, skip_bad=skip_bad)
    elif suffix in (".csv", ".tsv"):
        try:
            with path.open(encoding=text_encoding(path), newline="") as fh:
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                for n, row in enumerate(reader, start=2):
                    yield n, dict(row)
        except UnicodeDecodeError as e:
            raise InputError(path, f"not UTF-8 (byte {e.start}); convert it to UTF-8") from None
        except csv.Error as e:
            raise InputError(path, f"malformed {suffix[1:].upper()}: {e}") from None
    elif suffix == ".parquet":
        for n, row in enumerate(read_parquet(path), start=1):
            yield n, row
    else:
        raise InputError(path, f"unsupported corpus format {suffix!r} (use .jsonl, .csv, .tsv, .parquet or a folder)")


def pdf_to_text(path: Path) -> tuple[str, str]:
    """(title, text) of a PDF: the title from its metadata, the text of its pages (pypdf) with a blank line
    between pages. A scanned PDF has no text layer: its text is empty (and ingest skips it as empty)."""
    from pypdf import PdfReader

    # pypdf logs each repair it tries on a damaged file ("EOF marker not found"): the one line that matters is ours
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            reader.decrypt("")  # many "protected" PDFs open with an empty password
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = str((reader.metadata.title if reader.metadata else None) or "")
    except Exception as e:  # pypdf raises many kinds on damaged or locked files: all mean "cannot read it"
        raise InputError(path, f"unreadable PDF ({type(e).__name__}: {e})") from None
    return title, "\n\n".join(p for p in pages if p)


def _folder_file(f: Path) -> tuple[str, str]:
    """One file of a corpus folder as (title, text); InputError when it cannot be read."""
    suffix = f.suffix.lower()
    if suffix == ".pdf":
        return pdf_to_text(f)
    try:
        content = f.read_text(encoding=text_encoding(f))
    except UnicodeDecodeError as e:
        raise InputError(f, f"not UTF-8 (byte {e.start})") from None
    return html_to_text(content) if suffix in (".html", ".htm") else ("", content)


def _folder_docs(path: Path, skip_bad: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES)
    if not files:
        raise InputError(path, f"folder holds no {', '.join(sorted(FOLDER_SUFFIXES))} files")
    for n, f in enumerate(files, start=1):
        try:
            title, content = _folder_file(f)
        except InputError as e:
            if not skip_bad:
                raise InputError(e.path, f"{e.message}; pass --skip-bad to skip such files") from None
            log.warning("%s, skipped", e)
            continue
        yield n, {"doc_id": str(f.relative_to(path)), "text": content, "title": title}


def read_corpus(
    path: str | Path,
    *,
    id_field: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    skip_bad: bool = False,
) -> list[Document]:
    """Read a corpus: JSONL/CSV/TSV/Parquet with id and text columns, or a folder of .txt/.md/.html/.pdf files.

    Empty documents are skipped with a warning; duplicate ids are an error naming both lines.

    >>> docs = read_corpus("corpus.jsonl", id_field="pid")  # doctest: +SKIP
    """
    p = require_file(path)
    rows = _folder_docs(p, skip_bad) if p.is_dir() else _table_rows(p, skip_bad)
    docs: list[Document] = []
    seen: dict[str, int] = {}
    empty = 0
    id_col = text_col = None
    for n, row in rows:
        if id_col is None or text_col is None:
            id_col = _pick_field(p, row.keys(), id_field, ID_FIELDS, "id")
            text_col = _pick_field(p, row.keys(), text_field, TEXT_FIELDS, "text")
            if title_field is not None and title_field not in row:
                raise InputError(p, f"no title column {title_field!r}", field=title_field)
        doc_id, text = row.get(id_col), row.get(text_col)
        if doc_id is None or str(doc_id).strip() == "":
            raise InputError(p, "missing document id", line=n, field=id_col)
        doc_id = str(doc_id).strip()
        if text is not None and not isinstance(text, str):
            raise InputError(p, f"text must be a string, got {type(text).__name__}", line=n, field=text_col)
        if not text or not text.strip():
            empty += 1
            continue
        if doc_id in seen:
            raise InputError(
                p, f"duplicate document id {doc_id!r} (first on line {seen[doc_id]})", line=n, field=id_col
            )
        seen[doc_id] = n
        title = str(row.get(title_field or "title") or "")
        docs.append(Document(doc_id=doc_id, text=text.strip(), title=title))
    if empty:
        log.warning("%s: skipped %d empty document(s)", p, empty)
    if not docs:
        raise EmptyInput(p, "documents with text")
    return docs


_WORDS = re.compile(r"\S+")


def split_documents(docs: Sequence[Document], words: int, overlap: int = 0) -> list[Document]:
    """Documents longer than ``words`` words cut into passages of ``words`` words, each starting ``words -
    overlap`` words after the last, as a search engine indexes long pages for retrieval and RAG: a judge and a
    student read a passage whole, not a long document's first few hundred tokens. A passage keeps its document's
    title and its own stretch of the original text (line breaks and all); its id is ``<doc_id>#<k>``, k from 0.
    Documents that fit in one passage keep their id."""
    if words < 1 or not 0 <= overlap < words:
        raise QrelkitError(f"passages need words >= 1 and 0 <= overlap < words, got {words} and {overlap}")
    out: list[Document] = []
    for doc in docs:
        spans = [m.span() for m in _WORDS.finditer(doc.text)]
        if len(spans) <= words:
            out.append(doc)
            continue
        step = words - overlap
        last = max(0, len(spans) - words + step - 1) // step  # the passage that reaches the last word
        for k in range(last + 1):
            window = spans[k * step : k * step + words]
            text = doc.text[window[0][0] : window[-1][1]]
            out.append(Document(doc_id=f"{doc.doc_id}#{k}", text=text, title=doc.title))
    seen: set[str] = set()
    for passage in out:
        if passage.doc_id in seen:  # a document called "a#0" beside a long document "a"
            raise QrelkitError(f"two passages would be called {passage.doc_id!r}: rename that document")
        seen.add(passage.doc_id)
    return out


def write_documents(path: str | Path, docs: Sequence[Document]) -> None:
    write_parquet(path, [d.model_dump() for d in docs])


def read_documents(path: str | Path) -> list[Document]:
    """Read ``documents.parquet`` as written by ``qrelkit ingest`` (other corpus formats are accepted too)."""
    p = require_file(path)
    if p.suffix.lower() != ".parquet" or p.is_dir():
        return read_corpus(p)
    return read_corpus(p, id_field="doc_id", text_field="text")


# ---------------------------------------------------------------- pairs


PAIR_FIELDS = ("qid", "query", "doc_id", "text")


def read_pairs(path: str | Path, *, skip_bad: bool = False) -> list[Pair]:
    """Read pairs from Parquet (``qrelkit mine``) or JSONL with fields qid, query, doc_id, text."""
    p = require_file(path)
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for n, pair in _iter_pairs(p, skip_bad=skip_bad):
        key = (pair.qid, pair.doc_id)
        if key in seen:
            raise InputError(p, f"duplicate pair {key}", line=n)
        seen.add(key)
        pairs.append(pair)
    if not pairs:
        raise EmptyInput(p, "pairs")
    return pairs


def pair_chunks(pairs: Iterable[Pair], chunk: int, *, whole_queries: bool = False) -> Iterator[list[Pair]]:
    """``pairs`` in lists of ``chunk``. With ``whole_queries`` a list only ends where the query changes, so it may
    hold more (a student that reads a query's pairs together, ``query_context``, needs them in one list), and a
    query whose pairs are not next to each other is an error: its grades would depend on where the file splits."""
    out: list[Pair] = []
    finished: set[str] = set()
    for pair in pairs:
        if out and whole_queries and pair.qid != out[-1].qid:
            finished.add(out[-1].qid)
            if pair.qid in finished:
                raise QrelkitError(
                    f"the pairs of query {pair.qid!r} are not next to each other; this student grades a query's "
                    "pairs together: sort the pairs by query (qrelkit mine and qrelkit pool write them so)"
                )
        if len(out) >= chunk and not (whole_queries and pair.qid == out[-1].qid):
            yield out
            out = []
        out.append(pair)
    if out:
        yield out


def iter_pair_chunks(
    path: str | Path, chunk: int, *, skip: int = 0, whole_queries: bool = False
) -> Iterator[list[Pair]]:
    """Stream pairs in lists of ``chunk`` (:func:`pair_chunks`) without holding the file in memory, after skipping
    the first ``skip``.

    Parquet is read batch by batch (pyarrow); JSONL line by line. Unlike :func:`read_pairs`, duplicates are
    not checked (that would keep every key of a million-pair file in memory).
    """
    p = require_file(path)
    pairs = (pair for i, (_, pair) in enumerate(_iter_pairs(p)) if i >= skip)
    yield from pair_chunks(pairs, chunk, whole_queries=whole_queries)


def queries_together(path: str | Path) -> bool:
    """Whether each query's pairs are next to each other in a pairs file (one pass; only the query ids are kept)."""
    finished: set[str] = set()
    last: str | None = None
    for qid in _iter_qids(require_file(path)):
        if qid != last:
            if qid in finished:
                return False
            if last is not None:
                finished.add(last)
            last = qid
    return True


def group_pairs_by_query(path: str | Path, dest: str | Path, *, bucket_pairs: int = 200_000) -> int:
    """Copy a pairs file to ``dest`` (Parquet) with each query's pairs next to each other, in their file order;
    returns the number of pairs.

    Memory stays bounded whatever the file size: the pairs are first spread over buckets on disk by a hash of
    their query id (about ``bucket_pairs`` each), then each bucket is grouped in memory and appended. Queries come
    out bucket by bucket, each bucket's in the order of their first pair; the same file always gives the same copy
    (a resumed run relies on it)."""
    src, dest = require_file(path), Path(dest)
    buckets = min(256, max(1, math.ceil(count_pairs(src) / bucket_pairs)))
    bucket_dir = dest.with_name(dest.name + ".buckets")  # a fixed name: a run killed here leaves nothing behind
    shutil.rmtree(bucket_dir, ignore_errors=True)  # once it runs again
    bucket_dir.mkdir(parents=True)
    n = 0
    try:
        parts = [bucket_dir / f"{i}.jsonl" for i in range(buckets)]
        handles = [part.open("w", encoding="utf-8") for part in parts]
        try:
            for _, pair in _iter_pairs(src):
                handles[zlib.crc32(pair.qid.encode()) % buckets].write(pair.model_dump_json() + "\n")
        finally:
            for handle in handles:
                handle.close()
        with atomic_write(dest) as tmp, pq.ParquetWriter(tmp, PAIRS_SCHEMA) as writer:
            for part in parts:
                by_query: dict[str, list[dict[str, Any]]] = {}
                with part.open(encoding="utf-8") as fh:
                    for line in fh:
                        row = json.loads(line)
                        by_query.setdefault(row["qid"], []).append(row)
                rows = [row for group in by_query.values() for row in group]
                if rows:
                    writer.write_table(pa.Table.from_pylist(rows, schema=PAIRS_SCHEMA))
                n += len(rows)
    finally:
        shutil.rmtree(bucket_dir, ignore_errors=True)
    return n


def count_pairs(path: str | Path) -> int:
    """Number of pairs in a Parquet (from its metadata) or JSONL file (non-blank lines)."""
    p = require_file(path)
    if p.suffix.lower() == ".parquet":
        return int(pq.ParquetFile(p).metadata.num_rows)
    with p.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _iter_pairs(p: Path, *, skip_bad: bool = False) -> Iterator[tuple[int, Pair]]:
    rows: Iterable[tuple[int, dict[str, Any]]]
    if p.suffix.lower() == ".parquet":
        rows = _iter_parquet_rows(p)
    elif p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = iter_jsonl(p, skip_bad=skip_bad)
    else:
        raise InputError(p, "pairs must be .parquet or .jsonl")
    for n, row in rows:
        for f in PAIR_FIELDS:
            if row.get(f) is None:
                raise InputError(p, "missing field", line=n, field=f)
        yield (
            n,
            Pair(
                qid=str(row["qid"]),
                query=str(row["query"]),
                doc_id=str(row["doc_id"]),
                text=str(row["text"]),
                source=str(row.get("source") or "given"),
                bm25_rank=row.get("bm25_rank"),
                bm25_score=row.get("bm25_score"),
            ),
        )


def _iter_qids(p: Path) -> Iterator[str]:
    """The query id of every pair; from a Parquet file only its qid column is read."""
    table = pq.ParquetFile(p) if p.suffix.lower() == ".parquet" else None
    if table is not None and "qid" in table.schema_arrow.names:
        for batch in table.iter_batches(columns=["qid"]):
            yield from map(str, batch.column(0).to_pylist())
    else:  # JSONL; or a Parquet file without one, which fails here with the reader's clear error
        yield from (pair.qid for _, pair in _iter_pairs(p))


def _iter_parquet_rows(p: Path, batch_rows: int = 8192) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        reader = pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(p, f"not a readable Parquet file ({e})") from None
    n = 0
    for batch in reader.iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            n += 1
            yield n, row


PAIRS_SCHEMA = pa.schema(
    [
        ("qid", pa.string()),
        ("query", pa.string()),
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("bm25_rank", pa.int32()),
        ("bm25_score", pa.float32()),
    ]
)


def write_pairs(path: str | Path, pairs: Sequence[Pair]) -> None:
    write_parquet(path, [pr.model_dump() for pr in pairs], schema=PAIRS_SCHEMA)


# ---------------------------------------------------------------- TREC qrels


def _columns(p: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated columns) of each non-blank line of a TREC file (qrels, run), gzipped
    or not, UTF-8 with or without a byte-order mark."""
    with gzip.open(p, "rb") if _gzipped(p) else p.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            raw = _first_line(p, raw) if n == 1 else raw
            try:
                parts = raw.decode("utf-8").split()
            except UnicodeDecodeError as e:
                raise InputError(p, f"not UTF-8 (byte {e.start})", line=n) from None
            if parts:
                yield n, parts


def read_qrels(path: str | Path, *, max_grade: int | None = 3, duplicates: str = "error") -> Qrels:
    """Read TREC qrels (``qid iteration doc_id grade``). Grades must be integers from 0 to ``max_grade``
    (``1.`` is accepted; ``max_grade=None``: any non-negative grade, for published label sets that use 4 or 10).
    A pair listed twice is an error (``duplicates="error"``), or the last line wins with a warning (``"last"``)."""
    if duplicates not in ("error", "last"):
        raise QrelkitError(f"duplicates must be 'error' or 'last', got {duplicates!r}")
    p = require_file(path)
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    repeated = 0
    for n, parts in _columns(p):
        if len(parts) != 4:
            run = " (a TREC run? runs go after --runs, one option a file, or a folder)" if len(parts) == 6 else ""
            raise InputError(p, f"expected 4 columns 'qid 0 doc_id grade', got {len(parts)}{run}", line=n)
        qid, _, doc_id, grade_s = parts
        try:
            grade_f = float(grade_s)
        except ValueError:
            raise InputError(p, f"grade {grade_s!r} is not a number", line=n, field="grade") from None
        if grade_f != int(grade_f) or grade_f < 0:
            raise InputError(p, f"grade {grade_s!r} is not a non-negative integer", line=n, field="grade")
        if max_grade is not None and grade_f > max_grade:
            raise InputError(p, f"grade {grade_s} is outside 0–{max_grade}", line=n, field="grade")
        key = (qid, doc_id)
        if key in first_line:
            if duplicates == "error":
                where = f"first on line {first_line[key]}"
                raise InputError(p, f"pair ({qid}, {doc_id}) is graded twice ({where})", line=n)
            repeated += 1
        first_line.setdefault(key, n)
        qrels[key] = int(grade_f)
    if not qrels:
        raise EmptyInput(p, "judgments")
    if repeated:
        log.warning("%s: %d pair(s) graded more than once; the last grade of each was kept", p, repeated)
    return qrels


Run = dict[str, dict[str, float]]
"""A retrieval system's ranking, as in a TREC run file: qid → {doc_id: score} (higher ranks first)."""


def read_run(path: str | Path) -> Run:
    """Read a TREC run file (``qid Q0 doc_id rank score tag``, optionally gzipped): each query's documents and
    scores. A document listed twice for one query is an error naming both lines."""
    p = require_file(path)
    run: Run = {}
    first_line: dict[tuple[str, str], int] = {}
    for n, parts in _columns(p):
        if len(parts) != 6:
            raise InputError(p, f"expected 6 columns 'qid Q0 doc_id rank score tag', got {len(parts)}", line=n)
        qid, _, doc_id, _, score_s, _ = parts
        try:
            score = float(score_s)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):  # NaN would sort arbitrarily
            raise InputError(p, f"score {score_s!r} is not a finite number", line=n, field="score")
        if (qid, doc_id) in first_line:
            where = f"first on line {first_line[qid, doc_id]}"
            raise InputError(p, f"document {doc_id} is ranked twice for query {qid} ({where})", line=n)
        first_line[qid, doc_id] = n
        run.setdefault(qid, {})[doc_id] = score
    if not run:
        raise EmptyInput(p, "ranked documents")
    return run


def read_runs(paths: Iterable[str | Path]) -> dict[str, Run]:
    """TREC run files by system name (the file name without ``.gz`` and its last suffix); a folder stands for
    every file in it (hidden ones aside)."""
    files: list[Path] = []
    for path in paths:
        p = require_file(path)
        files += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p]
    runs: dict[str, Run] = {}
    origin: dict[str, Path] = {}
    for f in files:
        name = Path(f.name.removesuffix(".gz")).stem
        if name in runs:
            raise InputError(f, f"a second run called {name!r} (the first: {origin[name]})")
        runs[name], origin[name] = read_run(f), f
    return runs


def write_run(path: str | Path, run: Run, tag: str) -> None:
    """Write a TREC run file: each query's documents by descending score, ranks from 1."""
    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda item: (-item[1], item[0]))
        lines += [f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n" for rank, (doc, score) in enumerate(ranked, start=1)]
    atomic_write_text(path, "".join(lines))


def qrels_line(qid: str, doc_id: str, grade: int) -> str:
    """One TREC qrels line (``qid 0 doc_id grade``): the one place the format is written."""
    return f"{qid} 0 {doc_id} {int(grade)}\n"


def sidecar(qrels_path: str | Path, kind: str) -> Path:
    """A file written beside a teacher's qrels: ``teacher.qrels`` → ``teacher.<kind>``."""
    p = Path(qrels_path)
    return p.with_name(f"{p.stem}.{kind}")


def judgments_file(qrels_path: str | Path) -> Path:
    """``teacher.judgments.jsonl``: every judgment (grade distribution, raw answer, tokens)."""
    return sidecar(qrels_path, "judgments.jsonl")


def write_qrels(path: str | Path, grades: Iterable[tuple[str, str, int]]) -> int:
    """Write TREC qrels; gzip-compressed when ``path`` ends in ``.gz`` (the same grades give the same bytes:
    no time stamp in the header, so rewritten results do not churn in git). Returns the number of lines."""
    n = 0
    with atomic_write(path) as tmp, tmp.open("wb") as raw:
        sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if _gzipped(Path(path)) else raw
        with io.TextIOWrapper(sink, encoding="utf-8", newline="\n") as fh:  # closing it ends the gzip stream
            for qid, doc_id, grade in grades:
                fh.write(qrels_line(qid, doc_id, grade))
                n += 1
    return n


def _gzipped(path: Path) -> bool:
    return path.name.endswith(".gz")


def _tsv_queries(p: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with p.open(encoding=text_encoding(p)) as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            qid, tab, text = line.rstrip("\r\n").partition("\t")
            if not tab:
                raise InputError(p, "expected 'qid<TAB>query text'", line=n)
            yield n, {"qid": qid.strip(), "text": text.strip()}


def read_queries(path: str | Path) -> list[dict[str, Any]]:
    """Read ``queries.jsonl`` (each line needs ``qid`` and ``text``), or a TREC/MS MARCO topics file, ``.tsv`` or
    ``.txt``, of ``qid<TAB>text`` lines."""
    p = require_file(path)
    out = []
    seen: set[str] = set()
    rows = _tsv_queries(p) if p.suffix.lower() in (".tsv", ".txt") else iter_jsonl(p)
    for n, row in rows:
        for f in ("qid", "text"):
            if not row.get(f):
                raise InputError(p, "missing field", line=n, field=f)
        if row["qid"] in seen:
            raise InputError(p, f"duplicate qid {row['qid']!r}", line=n, field="qid")
        seen.add(row["qid"])
        out.append(row)
    if not out:
        raise EmptyInput(p, "queries")
    return out


@contextmanager
def folder_replaced(path: str | Path) -> Iterator[Path]:
    """Write a folder in a sibling ``.tmp`` folder and swap it in only when the block succeeds, so a crash
    mid-save never leaves a half-written model where a good one was."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if p.exists():
        shutil.rmtree(p)
    tmp.rename(p)
