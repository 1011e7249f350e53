"""A small hand-written set of query–product pairs with rationales, for relevance tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

PRODUCTS = [
    ("cordless drill", "DeWalt 20V MAX Cordless Drill Driver Kit with Battery", "drill"),
    ("garden hose", "Flexzilla 50 ft. Garden Hose with Brass Fittings", "garden hose"),
    ("led light bulb", "Philips 60W Equivalent Soft White A19 LED Light Bulb (4-Pack)", "bulb"),
    ("paint roller", "Wooster 9 in. x 3/8 in. Pro Paint Roller Cover", "paint roller cover"),
    ("toilet seat", "Kohler Cachet Elongated Closed Front Toilet Seat in White", "toilet seat"),
    ("ceiling fan", "Hampton Bay 52 in. Indoor Ceiling Fan with Light Kit", "ceiling fan"),
    ("wood screws", "Everbilt #8 x 1-1/4 in. Phillips Wood Screws (100-Pack)", "pack of screws"),
    ("lawn mower", "Toro 21 in. Gas Walk Behind Push Lawn Mower", "lawn mower"),
    ("door knob", "Kwikset Tylo Satin Nickel Passage Door Knob", "door knob"),
    ("shower head", "Moen Magnetix 6-Spray Handheld Shower Head in Chrome", "shower head"),
    ("smoke detector", "First Alert Battery Operated Smoke Alarm", "smoke alarm"),
    ("trash can", "Rubbermaid 32 Gal. Black Round Trash Can with Lid", "trash can"),
]


def pairs() -> list[dict]:
    """Each query with its own product (relevant) and with the next one's (not relevant)."""
    rows = []
    n = len(PRODUCTS)
    for i, (query, title, noun) in enumerate(PRODUCTS):
        other_title, other_noun = PRODUCTS[(i + 5) % n][1], PRODUCTS[(i + 5) % n][2]
        rows.append(
            {
                "id": f"r{i}",
                "search_term": query,
                "product_title": title,
                "relevance": 3.0,
                "rationale": f"The product is a {noun}, which is what a search for {query} wants.",
            }
        )
        rows.append(
            {
                "id": f"n{i}",
                "search_term": query,
                "product_title": other_title,
                "relevance": 1.33,
                "rationale": f"The product is a {other_noun}, not a {query}.",
            }
        )
    return rows


def write_pairs(folder: Path) -> tuple[Path, Path]:
    """Write ``pairs.csv`` and ``rationales.jsonl``; returns their paths."""
    rows = pairs()
    p = folder / "pairs.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "search_term", "product_title", "relevance"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in ("id", "search_term", "product_title", "relevance")})
    r = folder / "rationales.jsonl"
    with r.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({"id": row["id"], "rationale": row["rationale"]}) + "\n")
    return p, r
