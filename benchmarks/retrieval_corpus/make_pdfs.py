"""Write the evaluation corpus's PDFs (``pdf/*.pdf``) from its texts (``text/*.txt``).

The texts were written for DocuMind's retrieval evaluation (self-made, released with the project).
A text's first line is its title (``# ...``); ``## page`` starts a PDF page. The PDFs are committed;
run this again after editing a text: ``.venv/bin/python benchmarks/retrieval_corpus/make_pdfs.py``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from fpdf import FPDF

HERE = Path(__file__).resolve().parent


def pages_of(path: Path) -> tuple[str, list[str]]:
    """The title and the pages' texts of one corpus text."""
    lines = path.read_text(encoding="utf-8").splitlines()
    title = lines[0].removeprefix("# ").strip()
    pages: list[list[str]] = []
    for line in lines[1:]:
        if line.strip() == "## page":
            pages.append([])
        elif pages:
            pages[-1].append(line)
    return title, ["\n".join(page).strip() for page in pages]


def write_pdf(title: str, pages: list[str], target: Path) -> None:
    pdf = FPDF()
    pdf.set_creation_date(datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC))
    pdf.set_title(title)
    pdf.set_auto_page_break(False)
    for number, text in enumerate(pages, start=1):
        pdf.add_page()
        if number == 1:
            pdf.set_font("helvetica", style="B", size=14)
            pdf.multi_cell(0, 8, title)
            pdf.ln(2)
        pdf.set_font("helvetica", size=10.5)
        pdf.multi_cell(0, 5, text)
        pdf.set_y(-15)
        pdf.set_font("helvetica", size=8)
        pdf.cell(0, 5, f"{title} - page {number}", align="C")
    target.write_bytes(bytes(pdf.output()))


def main() -> None:
    out = HERE / "pdf"
    out.mkdir(exist_ok=True)
    for source in sorted((HERE / "text").glob("*.txt")):
        title, pages = pages_of(source)
        write_pdf(title, pages, out / f"{source.stem}.pdf")
        print(f"{source.stem}.pdf: {len(pages)} pages")


if __name__ == "__main__":
    main()
