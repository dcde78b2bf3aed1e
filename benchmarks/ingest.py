"""Ingestion throughput and memory: the whole pipeline against bare text extraction, OCR, bombs.

On a generated 100-page PDF (about 450 words a page), with the offline ``hashing`` embedder:

* bare pypdf extraction (``PdfReader(...).pages[i].extract_text()``) and bare pypdfium2 extraction,
  pages/s, in this process;
* the whole pipeline (``documents.ingestion.document_ingest``: the sandboxed extraction child, clean,
  chunk, embed, COPY into pgvector, progress bookkeeping) with each extractor, pages/s, as a ratio of
  bare extraction *with the same extractor*, and its stage timings (the best of ``--runs``);
* OCR: a generated 20-page scan (CCITT G4, 200 dpi) through the whole pipeline, OCR pages/s;
* peak memory (max RSS) of a fresh worker-like process and of each child: on a 500-page PDF, and on a
  bomb (three pages sharing one 24 MB content stream) which must fail ``pdf_too_complex``.

It runs against its own embedded PostgreSQL in a temporary folder (never the test suite's)::

    .venv/bin/python benchmarks/ingest.py [--pages 100] [--big-pages 500] [--scan-pages 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent


def configure(var_dir: str | None = None) -> None:
    """Django on a private embedded PostgreSQL (or ``DATABASE_URL`` when given), hashing embeddings."""
    sys.path.insert(0, str(BASE_DIR))
    if var_dir:
        os.environ["DOCUMIND_VAR_DIR"] = var_dir
        os.environ["EMBEDDED_PG_CLEANUP"] = "delete"
        os.environ["MEDIA_ROOT"] = str(Path(var_dir) / "media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.update(EMBEDDING_PROVIDER="hashing", OPENAI_API_KEY="", LOG_LEVEL="ERROR", LOG_FORMAT="console")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))  # base settings have no default key
    import django

    django.setup()


def database_url() -> str:
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    host = str(db.get("HOST") or "")
    auth = quote(db.get("USER") or "", safe="") + "@"
    if host.startswith("/"):
        return f"postgresql://{auth}/{quote(db['NAME'], safe='')}?host={quote(host)}"
    return f"postgresql://{auth}{host}:{db.get('PORT') or 5432}/{quote(db['NAME'], safe='')}"


# --- a realistic PDF -----------------------------------------------------------------------------

WORDS = [
    "analysis",
    "budget",
    "committee",
    "contract",
    "delivery",
    "employee",
    "finance",
    "growth",
    "hardware",
    "invoice",
    "journal",
    "knowledge",
    "logistics",
    "market",
    "network",
    "operations",
    "policy",
    "quarter",
    "revenue",
    "schedule",
    "training",
    "update",
    "vendor",
    "warehouse",
    "agreement",
    "balance",
    "customer",
    "department",
    "estimate",
    "forecast",
    "governance",
    "incident",
    "inventory",
    "liability",
    "margin",
    "objective",
    "procurement",
    "quality",
    "regulation",
    "report",
    "risk",
    "security",
    "strategy",
    "supplier",
    "target",
    "technology",
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "for",
    "on",
    "with",
    "by",
    "from",
    "at",
    "as",
    "is",
    "was",
    "are",
    "were",
    "be",
    "has",
    "have",
    "will",
    "may",
    "should",
    "can",
    "this",
    "that",
]


def make_pdf(pages: int, words_per_page: int = 450, seed: int = 1) -> bytes:
    """``pages`` pages of varied English-like text (each page different), written by fpdf2."""
    import random

    from fpdf import FPDF

    rng = random.Random(seed)
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("helvetica", size=8)
    for number in range(pages):
        pdf.add_page()
        words = [rng.choice(WORDS) for _ in range(words_per_page)]
        for i in range(11, len(words), 12):
            words[i] += "."
        pdf.multi_cell(0, 3.6, f"Page {number + 1}. " + " ".join(words))
    return bytes(pdf.output())


# --- measurements --------------------------------------------------------------------------------


def bare_pypdf(data: bytes) -> tuple[float, int]:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    started = time.perf_counter()
    reader = PdfReader(io.BytesIO(data))
    chars = sum(len(page.extract_text() or "") for page in reader.pages)
    return time.perf_counter() - started, chars


def bare_pdfium(data: bytes) -> tuple[float, int]:
    import pypdfium2 as pdfium

    started = time.perf_counter()
    document = pdfium.PdfDocument(data)
    chars = 0
    for index in range(len(document)):
        page = document[index]
        textpage = page.get_textpage()
        chars += len(textpage.get_text_range())
        textpage.close()
        page.close()
    document.close()
    return time.perf_counter() - started, chars


def tenant_and_owner(slug: str) -> tuple[Any, Any]:
    from accounts.models import User
    from tenants.models import Tenant

    tenant, _ = Tenant.objects.get_or_create(slug=slug, defaults={"name": slug})
    owner = User.objects.filter(tenant=tenant).first() or User.objects.create_user(
        f"bench@{slug}.test", tenant=tenant, role="admin"
    )
    return tenant, owner


def store(data: bytes, slug: str, name: str) -> Any:
    """A pending document holding ``data`` (as an upload would leave it), not queued."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from documents.services import document_upload

    tenant, owner = tenant_and_owner(slug)
    document, _ = document_upload(
        tenant=tenant, owner=owner, upload=SimpleUploadedFile(name, data, "application/pdf"), enqueue=False
    )
    return document


def pipeline(document: Any, extractor: str) -> tuple[float, dict[str, Any]]:
    from documents.extraction import get_extractor
    from documents.ingestion import document_ingest

    started = time.perf_counter()
    result = document_ingest(document_id=str(document.pk), extractor=get_extractor(extractor))
    return time.perf_counter() - started, result


def child(document_id: str, extractor: str) -> None:
    """Run in a fresh process: ingest one document, print the memory figures as JSON.

    ``peak_kb`` is this process's (the worker's) peak RSS; ``children_peak_kb`` the largest peak RSS
    of the sandbox children it waited for (``RUSAGE_CHILDREN``). A failed ingestion prints its error.
    """
    configure()
    from django.db import connection

    connection.ensure_connection()
    from documents import embeddings, extraction, ingestion  # noqa: F401  (imports a worker has done before a task)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        seconds, result = pipeline(type("D", (), {"pk": document_id})(), extractor)
    except ingestion.IngestionFailed as exc:
        seconds, result = time.perf_counter() - started, {"error": {"type": exc.code, "message": exc.message}}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "baseline_kb": baseline,
                "peak_kb": peak,
                "children_peak_kb": children,
                "seconds": seconds,
                "result": result,
            }
        )
    )


def peak_memory(data: bytes, extractor: str, slug: str) -> dict[str, Any]:
    document = store(data, slug, f"big-{extractor}.pdf")
    env = dict(os.environ, DATABASE_URL=database_url(), PDF_EXTRACTOR=extractor)
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(document.pk), "--extractor", extractor],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def stages(timings: dict[str, float]) -> str:
    return " · ".join(f"{stage} {seconds:.3f}" for stage, seconds in timings.items())


def mib(kb: float) -> str:
    return f"{kb / 1024:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--big-pages", type=int, default=500)
    parser.add_argument("--scan-pages", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--extractor", default="pypdfium2", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.extractor)
        return

    with tempfile.TemporaryDirectory(prefix="documind-bench-ingest-") as var_dir:
        configure(var_dir)
        from django.core.management import call_command

        from tests.documents import hostile

        call_command("migrate", verbosity=0)

        data = make_pdf(args.pages)
        print(f"PDF: {args.pages} pages, {len(data) / 1024:.0f} KiB (best of {args.runs} runs)")
        bare = {
            "pypdf": min(bare_pypdf(data) for _ in range(args.runs)),
            "pypdfium2": min(bare_pdfium(data) for _ in range(args.runs)),
        }
        for name, (seconds, chars) in bare.items():
            print(f"  bare {name:<10} {args.pages / seconds:8.1f} pages/s  ({seconds:.2f} s, {chars} chars)")
        pipeline(store(make_pdf(3, seed=99), "bench-warm-up", "warm.pdf"), "pypdf")  # tiktoken's BPE, imports
        for extractor in ("pypdf", "pypdfium2"):
            runs = [
                pipeline(store(make_pdf(args.pages, seed=10 + run), f"bench-{extractor}-{run}", "doc.pdf"), extractor)
                for run in range(args.runs)
            ]
            seconds, result = min(runs, key=lambda run: run[0])
            rate, bare_rate = args.pages / seconds, args.pages / bare[extractor][0]
            print(
                f"  pipeline[{extractor:<9}] {rate:8.1f} pages/s  ({seconds:.2f} s; {result['chunks']} chunks, "
                f"{result['embedding_tokens']} tokens embedded)  = {rate / bare_rate:.2f}x bare {extractor}"
            )
            print(f"      stages (s, overlapping): {stages(result['timings'])}")

        scan = hostile.ccitt_scan(
            [[f"Scanned page {n + 1} of the quarterly report.", "The harbour committee approved the budget."]
             for n in range(args.scan_pages)]
        )  # fmt: skip
        seconds, result = pipeline(store(scan, "bench-scan", "scan.pdf"), "pypdfium2")
        ocr = result["timings"]["ocr"]
        print(
            f"OCR: {args.scan_pages}-page CCITT G4 scan, rapidocr: {args.scan_pages / seconds:.2f} pages/s end to end "
            f"({seconds:.1f} s), {result['ocr_pages'] / ocr:.2f} pages/s in the OCR child; "
            f"OCR child peak RSS {mib(result['peak_rss_kb']['ocr'])}"
        )
        print(f"      stages (s): {stages(result['timings'])}")

        big = make_pdf(args.big_pages, seed=2)
        print("Peak memory of a fresh worker-like process and of its sandbox children")
        for extractor in ("pypdfium2", "pypdf"):
            figures = peak_memory(big, extractor, f"bench-big-{extractor}")
            result = figures["result"]
            print(
                f"  {args.big_pages} pages [{extractor:<9}] worker {mib(figures['peak_kb'])} "
                f"(+{mib(figures['peak_kb'] - figures['baseline_kb'])} over start-up), extraction child "
                f"{mib(result['peak_rss_kb']['extract'])}; {args.big_pages / figures['seconds']:.0f} pages/s, "
                f"{result['chunks']} chunks"
            )
        bomb = hostile.shared_stream_bomb(pages=3)
        figures = peak_memory(bomb, "pypdfium2", "bench-bomb")
        error = figures["result"].get("error") or {}
        print(
            f"  bomb ({len(bomb) / 1024:.0f} KiB, 3 pages sharing a 24 MB stream): {error.get('type')} in "
            f"{figures['seconds']:.1f} s ({error.get('message')}); worker {mib(figures['peak_kb'])} "
            f"(+{mib(figures['peak_kb'] - figures['baseline_kb'])}), extraction child "
            f"{mib(figures['children_peak_kb'])} (limit {os.environ.get('EXTRACT_MAX_MEMORY_MB', '512')} MiB)"
        )


if __name__ == "__main__":
    main()
