"""The sandboxed child's side: ``python -m documents.pdf_child extract|ocr '<config json>'``.

Started by :class:`documents.sandbox.Child` with its limits already applied; it does not load Django.
It writes msgpack messages to the file descriptor ``DOCUMIND_CHILD_FD``:

* ``{"t": "open", "pages": n}`` once the PDF is open (``extract``);
* ``{"t": "page", "n": 3, "text": "...", "ocr": bool, "s": seconds}`` (``extract``: ``ocr`` says
  the page has no text layer but shows an image) or
  ``{"t": "page", "n": 3, "text": "...", "confidence": 0.93, "dropped": 2, "s": seconds}`` (``ocr``);
* ``{"t": "error", "code": "pdf_invalid" | "pdf_encrypted" | "ocr_unavailable", "message": "..."}``;
* ``{"t": "too_complex", "page": 3, "reason": "time" | "memory", "message": "..."}``, then it exits;
* ``{"t": "done"}``.

``extract`` reads every page in order. ``ocr`` reads ``{"page": n}`` requests from stdin until
``{"end": true}``. In both, end-of-file on stdin means the parent is gone: the child exits at once.
A watchdog thread ends the child when one page takes longer than ``page_seconds`` (PDFium and
onnxruntime release the GIL, so the thread runs while they work), naming the page.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from typing import Any

import msgpack

from documents.procfs import vm_hwm_kb

EXIT_TOO_COMPLEX = 75
STARTED = time.monotonic()


class Writer:
    """Messages to the parent on the private descriptor (thread-safe)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        message["hwm"] = vm_hwm_kb()  # this process's peak RSS so far (the parent keeps the largest)
        data = msgpack.packb(message)
        with self.lock:
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]


class Watchdog(threading.Thread):
    """Ends the process when the current page runs past its budget."""

    def __init__(self, writer: Writer, seconds: float) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.seconds = seconds
        self.page: int | None = None
        self.deadline = math.inf

    def begin(self, page: int) -> None:
        self.page, self.deadline = page, time.monotonic() + self.seconds

    def end(self) -> None:
        self.page, self.deadline = None, math.inf

    def run(self) -> None:
        while True:
            time.sleep(0.05)
            if self.seconds > 0 and time.monotonic() > self.deadline:
                page = self.page
                message = f"page {page} took more than {self.seconds:g} s"
                try:
                    self.writer.send({"t": "too_complex", "page": page, "reason": "time", "message": message})
                finally:
                    os._exit(EXIT_TOO_COMPLEX)


def watch_stdin(requests: queue.Queue[dict[str, Any] | None]) -> None:
    """Requests from the parent; end-of-file (the parent is gone) ends the process."""
    unpacker = msgpack.Unpacker(raw=False)
    stream = sys.stdin.buffer
    while True:
        data = stream.read1(65536)
        if not data:
            os._exit(0)
        unpacker.feed(data)
        for message in unpacker:
            requests.put(message)


def too_complex(writer: Writer, page: int | None, reason: str, message: str) -> None:
    writer.send({"t": "too_complex", "page": page, "reason": reason, "message": message})
    os._exit(EXIT_TOO_COMPLEX)


def run_extract(config: dict[str, Any], writer: Writer, watchdog: Watchdog) -> None:
    from documents.extraction import EXTRACTORS, PdfError, clean_text

    extractor = EXTRACTORS[config.get("extractor", "pypdfium2")](
        page_timeout=0, max_page_chars=int(config.get("max_page_chars", 100_000))
    )
    min_chars = int(config.get("ocr_min_chars", 20))
    watchdog.begin(0)
    try:
        handle = extractor.open(config["path"])
        count = extractor.count(handle)
    except PdfError as exc:
        writer.send({"t": "error", "code": exc.code, "message": exc.message})
        return
    except MemoryError:
        too_complex(writer, None, "memory", "opening the PDF needed more memory than allowed")
    except RecursionError:
        writer.send({"t": "error", "code": "pdf_invalid", "message": "The PDF's page tree is broken (it loops)."})
        return
    writer.send({"t": "open", "pages": count})
    for index in range(count):
        started = time.monotonic()
        watchdog.begin(index + 1)
        skipped = False
        try:
            raw, has_images = extractor.read_page(handle, index)
        except MemoryError:
            too_complex(writer, index + 1, "memory", f"page {index + 1} needed more memory than allowed")
        except Exception as exc:  # a broken page must not sink the document (as before the sandbox)
            sys.stderr.write(f"pdf_page_unreadable page={index + 1} error={str(exc)[:200]}\n")
            raw, has_images, skipped = "", True, True
        text = clean_text(raw)
        watchdog.end()
        writer.send(
            {
                "t": "page",
                "n": index + 1,
                "text": text,
                "skipped": skipped,
                "ocr": len(text) < min_chars and has_images,
                "s": time.monotonic() - started,
            }
        )
    extractor.close(handle)
    writer.send({"t": "done"})


def render(document: Any, number: int, *, dpi: int, max_pixels: int) -> Any:
    """Page ``number`` as a greyscale PIL image at ``dpi`` (less when the page is huge)."""
    page = document[number - 1]
    try:
        width, height = page.get_size()
        scale = dpi / 72
        if width * height * scale * scale > max_pixels:
            scale = math.sqrt(max_pixels / max(width * height, 1))
        bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=False)
        return bitmap.to_pil()
    finally:
        page.close()


def run_ocr(config: dict[str, Any], writer: Writer, watchdog: Watchdog) -> None:
    import pypdfium2 as pdfium

    from documents.extraction import clean_text
    from documents.ocr import OcrUnavailable, get_engine, keep_confident

    requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
    threading.Thread(target=watch_stdin, args=(requests,), daemon=True).start()
    try:
        engine = get_engine(
            config.get("engine", "rapidocr"),
            languages=config.get("languages", "eng"),
            threads=int(config.get("threads", 1)),
        )
    except OcrUnavailable as exc:
        writer.send({"t": "error", "code": "ocr_unavailable", "message": str(exc)})
        return
    except MemoryError:
        too_complex(writer, None, "memory", "the OCR engine needed more memory than allowed to start")
    writer.send({"t": "ready", "s": time.monotonic() - STARTED})
    document = pdfium.PdfDocument(config["path"])
    min_confidence = float(config.get("min_confidence", 0.6))
    while True:
        request = requests.get()
        if request is None or request.get("end"):
            break
        number = int(request["page"])
        started = time.monotonic()
        watchdog.begin(number)
        try:
            image = render(document, number, dpi=int(config.get("dpi", 200)), max_pixels=int(config["max_pixels"]))
            page = keep_confident(engine.lines(image), min_confidence)
        except MemoryError:
            too_complex(writer, number, "memory", f"OCR of page {number} needed more memory than allowed")
        watchdog.end()
        writer.send(
            {
                "t": "page",
                "n": number,
                "text": clean_text(page.text),
                "confidence": page.confidence,
                "dropped": page.dropped_lines,
                "s": time.monotonic() - started,
            }
        )
    document.close()
    writer.send({"t": "done"})


def main(argv: list[str]) -> int:
    mode, config = argv[1], json.loads(argv[2])
    fd = int(os.environ["DOCUMIND_CHILD_FD"])
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the message stream
    writer = Writer(fd)
    watchdog = Watchdog(writer, float(config.get("page_seconds", 0)))
    watchdog.start()
    if mode == "extract":
        threading.Thread(target=watch_stdin, args=(queue.Queue(),), daemon=True).start()
        run_extract(config, writer, watchdog)
    elif mode == "ocr":
        run_ocr(config, writer, watchdog)
    elif mode == "selftest":  # the sandbox's own tests: misbehave on request
        run_selftest(config, writer, watchdog)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


def run_selftest(config: dict[str, Any], writer: Writer, watchdog: Watchdog) -> None:
    """Behave as told (``allocate_mb``, ``spin_seconds``, ``sleep_seconds``, ``crash``; ``pages``: that many
    pages of ``page_sleep_seconds`` each, a ``page`` message after each); tests of the limits."""
    threading.Thread(target=watch_stdin, args=(queue.Queue(),), daemon=True).start()
    writer.send({"t": "open", "pid": os.getpid()})
    watchdog.begin(1)
    if config.get("allocate_mb"):
        try:
            blob = bytearray(int(config["allocate_mb"]) * 1024 * 1024)
            blob[-1] = 1
        except MemoryError:
            too_complex(writer, 1, "memory", "allocation failed")
    if config.get("spin_seconds"):
        end = time.process_time() + float(config["spin_seconds"])
        while time.process_time() < end:
            pass
    if config.get("sleep_seconds"):
        time.sleep(float(config["sleep_seconds"]))
    if config.get("crash"):
        os.abort()
    watchdog.end()
    for number in range(1, int(config.get("pages", 0)) + 1):
        watchdog.begin(number)
        time.sleep(float(config.get("page_sleep_seconds", 0)))
        watchdog.end()
        writer.send({"t": "page", "n": number})
    writer.send({"t": "done"})


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stderr.flush()
    os._exit(code)  # no interpreter shutdown: the stdin thread may hold its lock (a fatal error at exit)
