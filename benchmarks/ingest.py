"""Ingestion throughput and memory: the whole pipeline against bare text extraction, in one run.

On a generated 100-page PDF (about 450 words a page), with the offline ``hashing`` embedder:

* bare pypdf extraction (``PdfReader(...).pages[i].extract_text()``), pages/s;
* bare pypdfium2 extraction, pages/s;
* the whole pipeline (``documents.ingestion.document_ingest``: extract, clean, chunk, embed, COPY
  into pgvector, progress bookkeeping) with each extractor, pages/s and as a ratio of bare pypdf;
* the peak memory (max RSS) of a fresh process ingesting a generated 500-page PDF, as a Celery
  worker process would, and how much it grew over the process's own start-up.

It runs against its own embedded PostgreSQL in a temporary folder (never the test suite's)::

    .venv/bin/python benchmarks/ingest.py [--pages 100] [--big-pages 500]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
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
    """Run in a fresh process: ingest one document, print the memory figures as JSON."""
    configure()
    from django.db import connection

    connection.ensure_connection()
    from documents import embeddings, extraction, ingestion  # noqa: F401  (imports a worker has done before a task)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, result = pipeline(type("D", (), {"pk": document_id})(), extractor)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "seconds": seconds, "result": result}))


def peak_memory(data: bytes, extractor: str, slug: str) -> dict[str, Any]:
    document = store(data, slug, f"big-{extractor}.pdf")
    env = dict(os.environ, DATABASE_URL=database_url(), PDF_EXTRACTOR=extractor)
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(document.pk), "--extractor", extractor],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--big-pages", type=int, default=500)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--extractor", default="pypdfium2", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.extractor)
        return

    with tempfile.TemporaryDirectory(prefix="documind-bench-ingest-") as var_dir:
        configure(var_dir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

        data = make_pdf(args.pages)
        print(f"PDF: {args.pages} pages, {len(data) / 1024:.0f} KiB")
        bare = {"pypdf": bare_pypdf(data), "pypdfium2": bare_pdfium(data)}
        bare_pypdf_rate = args.pages / bare["pypdf"][0]
        for name, (seconds, chars) in bare.items():
            print(f"  bare {name:<10} {args.pages / seconds:8.1f} pages/s  ({seconds:.2f} s, {chars} chars)")
        pipeline(store(make_pdf(3, seed=99), "bench-warm-up", "warm.pdf"), "pypdf")  # tiktoken's BPE, imports
        for extractor in ("pypdf", "pypdfium2"):
            document = store(data, f"bench-{extractor}", "doc.pdf")
            seconds, result = pipeline(document, extractor)
            rate = args.pages / seconds
            print(
                f"  pipeline[{extractor:<9}] {rate:8.1f} pages/s  ({seconds:.2f} s; {result['chunks']} chunks, "
                f"{result['embedding_tokens']} tokens embedded)  "
                f"= {rate / bare_pypdf_rate:.2f}x bare pypdf"
            )

        big = make_pdf(args.big_pages, seed=2)
        print(f"PDF: {args.big_pages} pages, {len(big) / 1024:.0f} KiB: peak memory of a fresh worker-like process")
        for extractor in ("pypdfium2", "pypdf"):
            figures = peak_memory(big, extractor, f"bench-big-{extractor}")
            print(
                f"  {extractor:<10} peak RSS {figures['peak_kb'] / 1024:6.0f} MiB "
                f"(+{(figures['peak_kb'] - figures['baseline_kb']) / 1024:.0f} MiB over start-up), "
                f"{args.big_pages / figures['seconds']:.0f} pages/s, {figures['result']['chunks']} chunks"
            )


if __name__ == "__main__":
    main()
