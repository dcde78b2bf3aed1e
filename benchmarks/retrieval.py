"""Retrieval quality per embedder × mode on the labelled corpus, and the local embedder's throughput.

The evaluation (``benchmarks/_retrieval_eval.py``): 8 self-made PDFs (32 pages, English and German)
under ``benchmarks/retrieval_corpus/`` and 66 labelled queries (paraphrases with little word overlap,
exact terms, numbers, multi-page answers, German and cross-lingual ones), split into a development
half (tuning) and a test half (``tests/documents/test_retrieval_floor.py`` holds a floor on it).

Printed:

* nDCG@10, recall@10 and MRR for every embedder (hashing, local) and mode (semantic, keyword,
  hybrid) on all queries, then per half, with the query latency (``search_chunks``, query embedding
  included, p50/p95);
* the hybrid fusion's weight of the semantic list tried on the development half (how
  ``SEARCH_SEMANTIC_WEIGHT`` was chosen);
* nDCG@10 of the local embedder's hybrid mode per query kind;
* throughput: ingest pages/s with the local embedder (extract, chunk, embed, store, in this process)
  against the bare embedder on the same chunks, and the query embedding time.

Own embedded PostgreSQL in a temporary folder (never the test suite's)::

    .venv/bin/python benchmarks/retrieval.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks._common import setup_django  # noqa: E402


def configure(var_dir: str) -> None:
    setup_django(var_dir, EMBEDDING_PROVIDER="local")


def row(label: str, scores: object) -> str:
    s = scores  # a benchmarks._retrieval_eval.Scores
    return (
        f"  {label:<22} {s.ndcg:8.3f} {s.recall:10.3f} {s.mrr:7.3f}"  # type: ignore[attr-defined]
        f"   {s.p50_ms:7.1f} {s.p95_ms:7.1f}"  # type: ignore[attr-defined]
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="documind-bench-retrieval-") as var_dir:
        configure(var_dir)
        from django.conf import settings
        from django.core.management import call_command

        from accounts.models import User
        from benchmarks import _retrieval_eval as ev
        from documents.chunking import chunk_pages
        from documents.embeddings import get_embedder
        from documents.extraction import get_extractor
        from documents.ingestion import document_ingest
        from documents.models import Document
        from tenants.models import Tenant

        call_command("migrate", verbosity=0)
        tenant = Tenant.objects.create(slug="eval", name="Evaluation", settings={"embedder": "local"})
        owner = User.objects.create_user("eval@eval.test", tenant=tenant, role="admin")
        embedders = {"hashing": get_embedder("hashing"), "local": get_embedder("local")}
        started = time.perf_counter()
        documents = ev.load_corpus(tenant, owner, list(embedders.values()))
        pages = sum(d.page_count for d in Document.objects.filter(tenant=tenant))
        chunks = sum(d.chunk_count for d in Document.objects.filter(tenant=tenant))
        print(
            f"corpus: {len(documents)} PDFs, {pages} pages, {chunks} chunks "
            f"({settings.CHUNK_TOKENS}/{settings.CHUNK_OVERLAP} tokens), both embedders, "
            f"{time.perf_counter() - started:.1f} s"
        )
        queries = ev.load_queries()
        for warm in queries[:3]:  # load the model, warm the caches
            ev.evaluate(tenant, documents, [warm], mode="hybrid", embedder=embedders["local"])

        header = f"  {'embedder / mode':<22} {'nDCG@10':>8} {'recall@10':>10} {'MRR':>7}   {'p50 ms':>7} {'p95 ms':>7}"
        results: dict[tuple[str, str, str], object] = {}
        for split in (None, "dev", "test"):
            subset = ev.load_queries(split)
            print(f"\n{split or 'all'} queries ({len(subset)}):")
            print(header)
            for mode in ("semantic", "keyword", "hybrid"):
                for name, embedder in embedders.items():
                    if mode == "keyword" and name != "hashing":
                        continue  # keyword search embeds nothing: one row
                    scores = ev.evaluate(tenant, documents, subset, mode=mode, embedder=embedder)
                    results[(split or "all", name, mode)] = scores
                    print(
                        row("-" if mode == "keyword" else name + " / " + mode, scores)
                        if mode != "keyword"
                        else row("(any) / keyword", scores)
                    )

        print("\nhybrid fusion on the development half (local): nDCG@10 by semantic weight (keyword weight 1)")
        dev = ev.load_queries("dev")
        original = settings.SEARCH_SEMANTIC_WEIGHT
        for weight in (0.5, 1.0, 1.5, 2.0, 3.0):
            settings.SEARCH_SEMANTIC_WEIGHT = weight
            scores = ev.evaluate(tenant, documents, dev, mode="hybrid", embedder=embedders["local"])
            marker = "  <- SEARCH_SEMANTIC_WEIGHT" if weight == original else ""
            print(f"  weight {weight:3.1f}: nDCG@10 {scores.ndcg:.3f}  MRR {scores.mrr:.3f}{marker}")
        settings.SEARCH_SEMANTIC_WEIGHT = original

        print("\nlocal / hybrid, nDCG@10 by query kind (all queries):")
        by_kind: dict[str, list[float]] = defaultdict(list)
        hybrid = results[("all", "local", "hybrid")]
        for query in queries:
            by_kind[query.kind].append(hybrid.per_query[query.id])  # type: ignore[attr-defined]
        for kind, values in sorted(by_kind.items()):
            print(f"  {kind:<13} {statistics.fmean(values):.3f}  ({len(values)} queries)")

        # Throughput: the whole pipeline (as a worker runs it) against the bare embedder.
        local = embedders["local"]
        pipeline_seconds, pipeline_pages = 0.0, 0
        all_texts: list[str] = []
        extractor = get_extractor()
        for path in ev.corpus_pdfs():
            from django.core.files.base import ContentFile

            data = path.read_bytes()
            document = Document(
                tenant=tenant, owner=owner, title=f"tp-{path.stem}", sha256=f"tp{path.stem}".ljust(64, "0")
            )
            document.file.save(f"{path.stem}.pdf", ContentFile(data), save=False)
            document.save()
            t0 = time.perf_counter()
            result = document_ingest(document_id=str(document.pk))
            pipeline_seconds += time.perf_counter() - t0
            pipeline_pages += result["pages"]
            page_texts = list(extractor.pages(str(path)))
            all_texts += [
                c.text
                for c in chunk_pages(page_texts, chunk_tokens=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP)
            ]
        t0 = time.perf_counter()
        local.embed(all_texts)
        bare = time.perf_counter() - t0
        windows = sum(len(local.windows(local.word_pieces(t))) for t in all_texts)
        query_times = []
        for query in queries:
            t0 = time.perf_counter()
            local.embed_query(query.text)
            query_times.append((time.perf_counter() - t0) * 1000)
        print(f"\nthroughput (local embedder, LOCAL_EMBEDDER_THREADS={settings.LOCAL_EMBEDDER_THREADS}):")
        print(
            f"  ingest pipeline     {pipeline_pages / pipeline_seconds:6.1f} pages/s   ({pipeline_pages} pages, {len(all_texts)} chunks, {pipeline_seconds:.2f} s)"
        )
        print(
            f"  bare embedder       {len(all_texts) / bare:6.1f} chunks/s  ({windows} windows of <=256 word-pieces, {windows / bare:.1f} windows/s, {bare:.2f} s)"
        )
        print(
            f"  pipeline / bare     {bare / pipeline_seconds:6.2f}  (share of the pipeline's throughput the embedder allows)"
        )
        print(f"  query embedding     p50 {statistics.median(query_times):.1f} ms, max {max(query_times):.1f} ms")


if __name__ == "__main__":
    main()
