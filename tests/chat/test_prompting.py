"""Prompt building, language handling, citations and the extractive provider (no database)."""

from __future__ import annotations

import pytest

from chat.llm import ChatRequest, Delta, ExtractiveProvider, Usage, best_sentences, get_chat_provider
from chat.prompting import (
    Source,
    answer_language,
    build_prompt,
    citations_for,
    cited_numbers,
    detect_language,
)
from chat.services import title_from_question
from documents.tokenizer import count_tokens


def source(
    n: int, text: str, title: str = "Doc", pages: tuple[int, int] = (1, 1), breaks: list[list[int]] | None = None
) -> Source:
    return Source(
        n=n,
        chunk_id=str(100 + n),
        document_id=f"doc-{n}",
        document_title=title,
        page_start=pages[0],
        page_end=pages[1],
        text=text,
        page_breaks=[] if breaks is None and pages[0] == pages[1] else breaks,
    )


SPANNING = (
    "The boiler is serviced every May by the caretaker. Radiators are bled in October.\n\n"
    "Employees receive twenty-five vacation days per year. Requests go to the team lead.\n\n"
    "Parking permits cost ten euros a month."
)
PAGE_2 = SPANNING.index("Employees")
PAGE_3 = SPANNING.index("Parking")


def test_the_extractive_answer_cites_each_sentences_own_page() -> None:
    spanning = source(1, SPANNING, pages=(1, 3), breaks=[[PAGE_2, 2], [PAGE_3, 3]])
    picked = best_sentences("How many vacation days per year?", [spanning])
    assert picked[0] == ("Employees receive twenty-five vacation days per year.", 1, "page 2")
    assert best_sentences("parking permit price", [spanning])[0][2] == "page 3"
    assert best_sentences("when is the boiler serviced", [spanning])[0][2] == "page 1"


def test_citations_name_the_pages_of_the_cited_span_not_the_chunk() -> None:
    spanning = source(1, SPANNING, pages=(1, 3), breaks=[[PAGE_2, 2], [PAGE_3, 3]])
    other = source(2, "Lunch is served from noon.", pages=(7, 7))
    answer = "You get twenty-five vacation days a year [1]. Lunch starts at noon [2]."
    first, second = citations_for(answer, [spanning, other])
    assert (first["page_start"], first["page_end"]) == (2, 2)
    assert first["snippet"].startswith("Employees receive twenty-five vacation days")
    assert (second["page_start"], second["page_end"]) == (7, 7)
    # two claims from one chunk on pages 1 and 3: the citation covers both
    both = citations_for("The boiler is serviced in May [1]; parking permits cost ten euros [1].", [spanning])
    assert [(c["page_start"], c["page_end"]) for c in both] == [(1, 3)]
    # nothing in common with the chunk, or unknown page breaks (older chunks): the chunk's whole range
    assert citations_for("Something else entirely [1].", [spanning])[0]["page_start"] == 1
    assert citations_for("Something else entirely [1].", [spanning])[0]["page_end"] == 3
    legacy = source(1, SPANNING, pages=(1, 3), breaks=None)
    legacy.page_breaks = None
    assert [(c["page_start"], c["page_end"]) for c in citations_for(answer, [legacy])] == [(1, 3)]


def test_detect_language() -> None:
    assert detect_language("How many vacation days?") == "en"
    assert detect_language("هر کارمند چند روز مرخصی دارد؟") == "fa"
    assert detect_language("كم عدد أيام الإجازة؟") == "ar"
    assert detect_language("12345 ?!") is None


def test_answer_language_follows_the_question_or_the_tenant() -> None:
    assert answer_language("چند روز مرخصی دارم؟", None)[0] == "fa"
    assert "answer in Persian" in answer_language("چند روز مرخصی دارم؟", "auto")[1]
    code, instruction = answer_language("How many days?", "fa")
    assert code == "fa" and "Always answer in Persian" in instruction
    assert "Always answer in Klingon" in answer_language("How many days?", "Klingon")[1]


def test_cited_numbers() -> None:
    assert cited_numbers("A [2]. B [1][2]. C [3, 4]. D [۵]. E [٦]. not [x] or [] or [1.5]") == [2, 1, 3, 4, 5, 6]
    sources = [source(1, "one"), source(2, "two")]
    assert [c["n"] for c in citations_for("x [2] y [9] z [1]", sources)] == [2, 1]
    assert citations_for("no citations", sources) == []


def test_citation_snippet_is_short_and_clean() -> None:
    citation = source(1, "word  \n " * 200, pages=(3, 4)).citation()
    assert len(citation["snippet"]) <= 240 and citation["snippet"].endswith("…") and "\n" not in citation["snippet"]
    assert (citation["page_start"], citation["page_end"]) == (3, 4)


def test_prompt_numbers_sources_and_keeps_within_budget() -> None:
    sources = [
        source(i, f"Passage {i}. " + "filler words here " * 60, title=f"T{i}", pages=(i, i + 1)) for i in range(1, 9)
    ]
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "blah " * 50} for i in range(10)
    ]
    prompt = build_prompt(
        question="What is in passage 3?",
        sources=sources,
        history=history,
        model="gpt-4o-mini",
        budget_tokens=1500,
        system_prompt="You are Acme's helper.",
    )
    system = prompt.messages[0]["content"]
    assert system.startswith("You are Acme's helper.")
    assert "[1] T1 (pages 1-2)" in system
    assert prompt.dropped_sources > 0 and len(prompt.sources) == 8 - prompt.dropped_sources
    assert [s.n for s in prompt.sources] == list(range(1, len(prompt.sources) + 1))
    assert prompt.messages[-1] == {"role": "user", "content": "What is in passage 3?"}
    # the most recent turns are kept, oldest dropped first
    kept = [m["content"] for m in prompt.messages[1:-1]]
    assert kept and kept[-1].startswith("turn 9") and not any(k.startswith("turn 0") for k in kept)
    total = sum(count_tokens(m["content"], "gpt-4o-mini") for m in prompt.messages)
    assert total <= 1500 and prompt.prompt_tokens >= total


def test_renumbering_when_a_source_does_not_fit() -> None:
    big = source(1, "huge " * 5000)
    small = source(2, "small passage")
    prompt = build_prompt(question="q", sources=[big, small], history=[], model="gpt-4o-mini", budget_tokens=800)
    assert [(s.n, s.chunk_id) for s in prompt.sources] == [(1, small.chunk_id)]
    assert "[1] Doc (page 1)\nsmall passage" in prompt.messages[0]["content"]


def test_best_sentences() -> None:
    sources = [
        source(1, "The cafeteria opens at noon. Vacation requests need approval."),
        source(2, "Employees receive twenty-five vacation days per year.\n\nParking is free."),
    ]
    picked = best_sentences("How many vacation days per year?", sources)
    assert picked[0] == ("Employees receive twenty-five vacation days per year.", 2, "page 1")
    assert ("Vacation requests need approval.", 1, "page 1") in picked
    assert all("cafeteria" not in s and "Parking" not in s for s, _, _ in picked)
    assert best_sentences("quantum chromodynamics", sources) == []


async def test_extractive_provider_streams_and_admits_it_has_no_model() -> None:
    sources = [source(1, "Employees receive twenty-five vacation days per year.")]
    request = ChatRequest(model="gpt-4o-mini", messages=[], max_tokens=100, question="vacation days", sources=sources)
    items = [item async for item in ExtractiveProvider().stream(request)]
    text = "".join(i.text for i in items if isinstance(i, Delta))
    assert text.startswith("No language model is configured")
    assert text.endswith("- Employees receive twenty-five vacation days per year. [1] (page 1)")
    assert items[-1] == Usage(0, 0) and len(items) > 5
    request.question = "quantum chromodynamics"
    text = "".join([i.text async for i in ExtractiveProvider().stream(request) if isinstance(i, Delta)])
    assert "could not find anything" in text


def test_provider_selection(settings: object) -> None:
    settings.CHAT_PROVIDER = "auto"  # type: ignore[attr-defined]
    settings.OPENAI_API_KEY = ""  # type: ignore[attr-defined]
    assert get_chat_provider().name == "extractive"
    settings.OPENAI_API_KEY = "sk-x"  # type: ignore[attr-defined]
    assert get_chat_provider().name == "openai"
    assert get_chat_provider("extractive").name == "extractive"
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        get_chat_provider("llamafile")


def test_title_from_question() -> None:
    assert title_from_question("  What is\n our policy?  ") == "What is our policy?"
    long = title_from_question("word " * 40)
    assert len(long) <= 81 and long.endswith("…") and not long.endswith(" …")
