"""Token tags from a rationale: which words of the (query, title) input the teacher cites.

``aux="tags"`` turns each rationale into one target per input token, for a token classifier on
the cross-encoder's last-layer states:

* ``CITED_RELEVANT`` (1): the token's word appears in the rationale of a relevant pair;
* ``CITED_IRRELEVANT`` (2): it appears in the rationale of a pair that is not relevant;
* ``NOT_CITED`` (0): it does not appear;
* ``IGNORE`` (-100): special tokens, padding, stop words, and every token of a pair without a
  rationale.

The rationale explains a known label (paper, Appendix C), so the words it cites are the evidence
for that label; the tag asks the encoder to find that evidence in each token's state, a dense
target aligned with the encoder's own tokens, where a decoder has to learn to write the
rationale first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

NOT_CITED, CITED_RELEVANT, CITED_IRRELEVANT, IGNORE = 0, 1, 2, -100
N_TAGS = 3

_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have in is it its of on or that the this to "
    "with not no what which who whose these those their they than so while also only one "
    "query product title item asks asked looking".split()
)


def normalise(word: str) -> str:
    """Lower-case alphanumerics, a plural ``s`` dropped: the form cited words are matched in."""
    w = "".join(_WORD.findall(word.lower()))
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def cited_words(rationale: str) -> set[str]:
    """The rationale's words in matching form, stop words left out."""
    words = {normalise(w) for w in _WORD.findall(rationale.lower())}
    return words - STOP_WORDS - {""}


def token_tags(
    encoding: Any, texts: Sequence[tuple[str, str]], rationales: Sequence[str | None],
    labels: Sequence[float],
) -> list[list[int]]:  # fmt: skip
    """One tag per token of each row of a fast tokenizer's ``encoding`` of ``texts`` (pairs),
    which must carry ``offset_mapping``; rows without a rationale are all ``IGNORE``."""
    offsets = encoding["offset_mapping"]
    out = []
    for i, ((query, title), rationale, label) in enumerate(
        zip(texts, rationales, labels, strict=True)
    ):
        seq_ids, word_ids = encoding.sequence_ids(i), encoding.word_ids(i)
        n = len(seq_ids)
        if not rationale:
            out.append([IGNORE] * n)
            continue
        cited = cited_words(rationale)
        spans: dict[tuple[int, int], list[int]] = {}
        for j, (s, w) in enumerate(zip(seq_ids, word_ids, strict=True)):
            if s is None or w is None:
                continue
            a, b = (int(x) for x in offsets[i][j])
            span = spans.setdefault((s, w), [a, b])
            span[0], span[1] = min(span[0], a), max(span[1], b)
        hit = CITED_RELEVANT if label >= 0.5 else CITED_IRRELEVANT
        tags = []
        for s, w in zip(seq_ids, word_ids, strict=True):
            if s is None or w is None:
                tags.append(IGNORE)
                continue
            a, b = spans[(s, w)]
            word = normalise((query, title)[s][a:b])
            if not word or word in STOP_WORDS:
                tags.append(IGNORE)
            else:
                tags.append(hit if word in cited else NOT_CITED)
        out.append(tags)
    return out
