"""Real PDFs made for the tests, with known text (fpdf2 writes them, pypdf encrypts them)."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from fpdf import FPDF
from PIL import Image

PERSIAN_SENTENCE = "کتابخانه مرکزی دانشگاه تهران هر روز از ساعت هشت صبح باز است."
PERSIAN_SECOND = "دانشجویان می‌توانند کتاب‌های فارسی و عربی را امانت بگیرند."
ARABIC_SENTENCE = "تفتح المكتبة المركزية في الجامعة أبوابها كل يوم من الساعة الثامنة صباحا."

# Committee minutes with one fact on page 2 among filler: what the cross-process, end-to-end and browser
# tests upload, search for and ask about.
_MINUTES_FILLER = (
    "The committee reviewed the minutes of the previous meeting and approved them without changes. "
    "Members discussed the schedule for the coming quarter and agreed to meet again next month. "
)
MINUTES_PAGES = [
    _MINUTES_FILLER * 3,
    _MINUTES_FILLER * 2
    + "The lighthouse keeper's cat is named Marmalade and sleeps on the third step. "
    + _MINUTES_FILLER * 2,
    _MINUTES_FILLER * 3,
]
MINUTES_QUESTION = "What is the lighthouse keeper's cat called?"


@cache
def arabic_font() -> str:
    """A TTF with Arabic-script glyphs: Amiri, shipped by the pinned ``fontpkg-amiri`` test dependency."""
    import fontpkg_amiri

    return str(Path(fontpkg_amiri.__file__).parent / "files" / "Amiri-Regular.ttf")


def make_pdf(pages: list[str], *, font_size: int = 11) -> bytes:
    """A PDF with one page per string (Latin text, core font)."""
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("helvetica", size=font_size)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 5, text)
    return bytes(pdf.output())


def make_persian_pdf(paragraphs: list[str], *, language: str = "fas") -> bytes:
    """A right-to-left PDF: shaped Persian (or, ``language="ara"``, Arabic) text (HarfBuzz through fpdf2),
    one page per paragraph."""
    pdf = FPDF()
    pdf.add_font("Amiri", fname=arabic_font())
    pdf.set_font("Amiri", size=13)
    pdf.set_text_shaping(use_shaping_engine=True, direction="rtl", script="arab", language=language)
    for text in paragraphs:
        pdf.add_page()
        pdf.multi_cell(0, 9, text, align="R")
    return bytes(pdf.output())


def make_image_pdf(pages: int = 2) -> bytes:
    """Pages holding only a picture (what a scan looks like): no text layer at all."""
    image = Image.new("RGB", (400, 300), "white")
    for x in range(40, 360):
        for y in (60, 61, 120, 121, 180, 181):
            image.putpixel((x, y), (0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    pdf = FPDF()
    for _ in range(pages):
        pdf.add_page()
        pdf.image(io.BytesIO(buffer.getvalue()), x=10, y=10, w=180)
    return bytes(pdf.output())


def make_blank_pdf(pages: int) -> bytes:
    """``pages`` empty pages (fast even for hundreds)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypt_pdf(data: bytes, *, user_password: str, owner_password: str = "owner-secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def filler(words: int, seed: int = 0) -> str:
    """Deterministic English-looking filler text of ``words`` words (no rare words)."""
    vocabulary = [
        "the",
        "report",
        "describes",
        "how",
        "teams",
        "plan",
        "budgets",
        "review",
        "results",
        "and",
        "share",
        "notes",
        "with",
        "partners",
        "across",
        "regions",
        "while",
        "managers",
        "track",
        "progress",
        "against",
        "goals",
        "and",
        "adjust",
        "schedules",
        "when",
        "priorities",
        "change",
    ]
    out = []
    for i in range(words):
        out.append(vocabulary[(i * 7 + seed * 13) % len(vocabulary)])
        if i % 12 == 11:
            out[-1] += "."
    return " ".join(out)
