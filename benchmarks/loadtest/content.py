"""What the load test's people write and ask: a few topics, a question on each, unique small PDFs.

Shared by the locustfile and the driver's warm-up (which must not import locust: it patches the
standard library with gevent on import).
"""

from __future__ import annotations

import uuid

from fpdf import FPDF

TOPICS = [
    ("lighthouse", "The lighthouse keeper's cat is named Marmalade and sleeps on the third step."),
    ("harbour", "The harbour master records every ship that enters after sunset in a blue ledger."),
    ("orchard", "The orchard behind the school grows twelve kinds of apples and two kinds of pears."),
    ("library", "The village library lends telescopes on clear nights from October to March."),
    ("bakery", "The bakery on Mill Street bakes rye bread on Tuesdays and almond cakes on Fridays."),
    ("railway", "The narrow-gauge railway carries slate from the quarry down to the river wharf."),
]
QUESTIONS = [
    "What is the lighthouse keeper's cat called?",
    "When does the library lend telescopes?",
    "What does the bakery bake on Fridays?",
    "Where does the railway carry slate?",
    "How many kinds of apples grow in the orchard?",
    "Who records the ships that enter after sunset?",
]
FILLER = (
    "The committee reviewed the minutes of the previous meeting and approved them without changes. "
    "Members discussed the schedule for the coming quarter and agreed to meet again next month. "
)


def make_pdf(topic: str, sentence: str) -> bytes:
    """A two-page PDF about ``topic`` whose bytes are new every time (a duplicate upload is answered 200)."""
    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.set_font("helvetica", size=11)
    for page in (FILLER * 2 + sentence + " " + FILLER, f"Reference {uuid.uuid4()} about the {topic}. " + FILLER):
        pdf.add_page()
        pdf.multi_cell(0, 5, page)
    return bytes(pdf.output())
