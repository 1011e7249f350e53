"""Small text helpers shared by the LLM programs."""

from __future__ import annotations


def trim_to_sentence(text: str) -> str:
    """Whitespace-normalised; text cut by a token cap ends at its last full sentence."""
    text = " ".join(str(text).split())
    if text and text[-1] not in ".!?":
        cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if cut > 0:
            text = text[: cut + 1]
    return text
