"""Hostile and scanned PDFs, written byte by byte (or by PIL/fpdf2) in the tests: nothing is downloaded.

* :func:`shared_stream_bomb` — pages sharing one small Flate stream that inflates to tens of MB of
  drawing operators (the 72 KB / 20 MB file of issue 11; ``pages=200`` is its 102 KB variant).
* :func:`image_bomb` — one page with a tiny Flate image stream declaring 40000×40000 pixels.
* :func:`million_glyph_page` — a page whose content stream shows a million glyphs.
* :func:`looping_page_tree` — a page tree whose ``/Kids`` point back at itself.
* :func:`wordy_pages` — ordinary pages, each with ~60,000 characters of text (more in all than a pipe holds).
* :func:`ccitt_scan` — a real scan-like page: text rendered to a 1-bit image, stored as CCITT G4 by PIL.
* :func:`photo_pdf` — a page holding a noisy greyscale picture with no words in it.
"""

from __future__ import annotations

import io
import random
import zlib

from fpdf import FPDF
from PIL import Image, ImageFilter


def build_pdf(objects: list[bytes], *, root: int = 1) -> bytes:
    """A PDF from object bodies (object ``i+1`` is ``objects[i]``), with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def stream(data: bytes, extra: str = "", *, compress: bool = True) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        extra += " /Filter /FlateDecode"
    return f"<< /Length {len(data)}{extra} >>\nstream\n".encode() + data + b"\nendstream"


def _pages_with_content(pages: int, content_ref: int, font: bool = False) -> list[bytes]:
    """Catalog (1), Pages (2), the page objects (3...), pointing at object ``content_ref``."""
    kids = " ".join(f"{3 + i} 0 R" for i in range(pages))
    resources = (
        "/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>" if font else ""
    )
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode()]
    for _ in range(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_ref} 0 R {resources} >>".encode()
        )
    return objects


def shared_stream_bomb(pages: int = 3, megabytes: int = 24) -> bytes:
    """``pages`` pages that all draw one content stream of ``megabytes`` MB of tiny path operations."""
    unit = b"1 1 m 2 2 l S\n"  # one path object per line: PDFium keeps each as an object in memory
    content = unit * (megabytes * 1024 * 1024 // len(unit))
    objects = _pages_with_content(pages, 3 + pages)
    objects.append(stream(content))
    return build_pdf(objects)


def image_bomb() -> bytes:
    """One page whose only image claims 40000×40000 greyscale pixels (1.6 GB) from a few KB of Flate."""
    width = height = 40_000
    image = stream(
        b"\x00" * (width * 64),  # the first rows: the decoder has to allocate the whole picture anyway
        f" /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray /BitsPerComponent 8",
    )
    content = stream(b"q 612 0 0 792 0 0 cm /Im1 Do Q")
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /XObject << /Im1 5 0 R >> >> >>",
            content,
            image,
        ]
    )


def million_glyph_page(glyphs: int = 1_000_000) -> bytes:
    """One page showing ``glyphs`` characters, each in its own text-showing operator."""
    body = b"BT /F1 1 Tf 10 700 Td " + b"(a) Tj " * glyphs + b"ET"
    objects = _pages_with_content(1, 4, font=True)
    objects.append(stream(body))
    return build_pdf(objects)


def wordy_pages(pages: int = 40, lines: int = 600, width: int = 100) -> bytes:
    """``pages`` pages sharing one content stream of ``lines`` lines of ``width`` characters (tiny type)."""
    line = (b"lorem ipsum dolor sit amet " * (width // 27 + 1))[:width]
    body = b"BT /F1 1 Tf 1 TL 10 780 Td " + b"".join(b"(" + line + b") '\n" for _ in range(lines)) + b"ET"
    objects = _pages_with_content(pages, 3 + pages, font=True)
    objects.append(stream(body))
    return build_pdf(objects)


def looping_page_tree() -> bytes:
    """A page tree whose second node lists itself (and the root) among its kids."""
    content = stream(b"BT /F1 12 Tf 72 700 Td (loop) Tj ET", compress=False)
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 3 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 5 0 R "
            b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>",
            b"<< /Type /Pages /Parent 2 0 R /Kids [4 0 R 2 0 R] /Count 2 >>",
            content,
        ]
    )


def text_image(lines: list[str], *, dpi: int = 200, font_size: int = 14) -> Image.Image:
    """``lines`` printed on an A4 page (fpdf2's Helvetica) and rasterised at ``dpi``, greyscale."""
    import pypdfium2 as pdfium

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_font("helvetica", size=font_size)
    for line in lines:
        pdf.multi_cell(0, font_size * 0.55, line)
        pdf.ln(2)
    document = pdfium.PdfDocument(bytes(pdf.output()))
    try:
        return document[0].render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    finally:
        document.close()


def ccitt_scan(pages: list[list[str]], *, dpi: int = 200) -> bytes:
    """A scanned PDF: each page a 1-bit image of its lines stored CCITT Group 4 (as office scanners do).

    PIL writes the image as a G4 TIFF; its single strip is the CCITTFaxDecode stream of the PDF.
    """
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for lines in pages:
        picture = text_image(lines, dpi=dpi).point(lambda v: 255 if v > 160 else 0).convert("1")
        tiff = io.BytesIO()
        picture.save(tiff, format="TIFF", compression="group4", strip_size=1 << 30)
        strip = _tiff_strip(tiff.getvalue())
        width, height = picture.size
        page_number = len(objects) + 1
        kids.append(page_number)
        image_number, content_number = page_number + 1, page_number + 2
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {content_number} 0 R "
            f"/Resources << /XObject << /Scan {image_number} 0 R >> >> >>".encode()
        )
        objects.append(
            stream(
                strip,
                f" /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /DeviceGray "
                f"/BitsPerComponent 1 /Filter /CCITTFaxDecode "
                f"/DecodeParms << /K -1 /Columns {width} /Rows {height} /BlackIs1 false >>",
                compress=False,
            )
        )
        objects.append(stream(b"q 595 0 0 842 0 0 cm /Scan Do Q", compress=False))
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode()
    return build_pdf(objects)


def _tiff_strip(data: bytes) -> bytes:
    """The one image strip of a single-strip TIFF written by PIL (tags 273 StripOffsets, 279 StripByteCounts)."""
    from PIL import TiffImagePlugin

    image = Image.open(io.BytesIO(data))
    assert isinstance(image, TiffImagePlugin.TiffImageFile)
    offsets = image.tag_v2[273]
    counts = image.tag_v2[279]
    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
    counts = counts if isinstance(counts, tuple) else (counts,)
    assert len(offsets) == len(counts) == 1, "PIL wrote more than one strip"
    return data[offsets[0] : offsets[0] + counts[0]]


def mixed_pdf(text_pages: list[str], scanned_lines: list[str]) -> bytes:
    """Text-layer pages followed by one scanned page (PNG image, no text layer)."""
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("helvetica", size=11)
    for text in text_pages:
        pdf.add_page()
        pdf.multi_cell(0, 5, text)
    picture = io.BytesIO()
    text_image(scanned_lines).save(picture, format="PNG")
    pdf.add_page()
    pdf.image(io.BytesIO(picture.getvalue()), x=0, y=0, w=210, h=297)
    return bytes(pdf.output())


def photo_pdf(pages: int = 1, seed: int = 7) -> bytes:
    """Pages holding a blurred random-noise picture: something to look at, nothing to read."""
    rng = random.Random(seed)
    pdf = FPDF()
    for _ in range(pages):
        picture = Image.new("L", (600, 450))
        picture.putdata([rng.randrange(256) for _ in range(600 * 450)])
        picture = picture.filter(ImageFilter.GaussianBlur(3))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        pdf.add_page()
        pdf.image(io.BytesIO(buffer.getvalue()), x=10, y=10, w=190)
    return bytes(pdf.output())


def scanned_copy(data: bytes, *, dpi: int = 200) -> bytes:
    """Every page of ``data`` rasterised and put back as a picture: a scan of it, with no text layer."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(data)
    pdf = FPDF()
    try:
        for index in range(len(document)):
            picture = io.BytesIO()
            document[index].render(scale=dpi / 72, grayscale=True).to_pil().convert("L").save(picture, format="PNG")
            pdf.add_page()
            pdf.image(io.BytesIO(picture.getvalue()), x=0, y=0, w=210, h=297)
    finally:
        document.close()
    return bytes(pdf.output())
