"""Regenerate dualexpert/demo/catalogue.csv: a small hand-written demo catalogue.

Deterministic: product texts are built from per-category nouns, attributes and brands that we
wrote ourselves. Run: python scripts/make_demo_catalogue.py
"""

import csv
import random
from pathlib import Path

CATS = {
    ("Food & Grocery", "Baking", "Edible Cake Decorations"): (
        [
            "sugar sprinkles",
            "fondant cake topper",
            "chocolate curls",
            "edible glitter",
            "marzipan figures",
            "icing flowers",
            "sugar pearls",
        ],
        ["vanilla flavoured", "gluten free", "rainbow", "gold", "vegan", "party pack"],
        "Edible decoration made from sugar for cakes and cupcakes.",
    ),
    ("Food & Grocery", "Beverages", "Coffee"): (
        [
            "ground coffee",
            "espresso beans",
            "instant coffee",
            "decaf coffee pods",
            "cold brew coffee",
            "arabica whole beans",
        ],
        ["dark roast", "medium roast", "fair trade", "organic", "1 kg bag", "single origin"],
        "Roasted coffee for brewing at home.",
    ),
    ("Food & Grocery", "Beverages", "Tea"): (
        [
            "green tea bags",
            "earl grey tea",
            "chamomile infusion",
            "loose leaf black tea",
            "matcha powder",
            "peppermint tea",
        ],
        ["organic", "caffeine free", "80 bags", "premium", "tin", "herbal"],
        "Tea leaves and infusions for brewing.",
    ),
    ("Home & Garden", "Kitchen", "Cookware"): (
        ["frying pan", "saucepan", "stock pot", "wok", "casserole dish", "griddle pan"],
        ["non-stick", "cast iron", "stainless steel", "induction ready", "24 cm", "with lid"],
        "Pots and pans for cooking on the hob or in the oven.",
    ),
    ("Home & Garden", "Kitchen", "Cutlery"): (
        ["chef knife", "steak knives", "cutlery set", "bread knife", "paring knife", "teaspoons"],
        ["stainless steel", "24 piece", "forged", "dishwasher safe", "wooden handle", "gift box"],
        "Knives, forks and spoons for the kitchen and the table.",
    ),
    ("Home & Garden", "Garden", "Garden Tools"): (
        ["pruning shears", "garden spade", "hand trowel", "rake", "hedge trimmer", "hoe"],
        ["ergonomic", "carbon steel", "long handle", "heavy duty", "lightweight", "rust proof"],
        "Hand tools for digging, cutting and tending a garden.",
    ),
    ("Home & Garden", "Party Supplies", "Cake Toppers"): (
        [
            "happy birthday cake topper",
            "glitter cake topper",
            "wooden cake topper",
            "acrylic cake topper",
            "cupcake picks",
            "wedding cake topper",
        ],
        ["gold glitter card", "reusable", "on wooden sticks", "acrylic", "mr and mrs", "set of 12"],
        "Non-edible decorations of card, wood or plastic stuck into a cake.",
    ),
    ("Electronics", "Computing", "Laptops"): (
        [
            "laptop",
            "notebook computer",
            "ultrabook",
            "chromebook",
            "gaming laptop",
            "2-in-1 laptop",
        ],
        ["15.6 inch", "16GB RAM", "512GB SSD", "Intel Core i7", "touchscreen", "backlit keyboard"],
        "Portable computers with a screen and keyboard.",
    ),
    ("Electronics", "Computing", "Computer Mice"): (
        [
            "wireless mouse",
            "gaming mouse",
            "bluetooth mouse",
            "vertical ergonomic mouse",
            "optical mouse",
            "trackball mouse",
        ],
        ["2.4 GHz", "RGB", "silent click", "rechargeable", "6 buttons", "16000 DPI"],
        "Pointing devices for computers.",
    ),
    ("Electronics", "Audio", "Headphones"): (
        [
            "over-ear headphones",
            "wireless earbuds",
            "noise cancelling headphones",
            "in-ear monitors",
            "sports earphones",
            "studio headphones",
        ],
        ["bluetooth 5.3", "30 hour battery", "foldable", "with microphone", "hi-res", "waterproof"],
        "Headphones and earphones for listening to audio.",
    ),
    ("Clothing", "Footwear", "Running Shoes"): (
        [
            "running shoes",
            "trail running shoes",
            "road running trainers",
            "racing flats",
            "marathon shoes",
        ],
        ["breathable mesh", "cushioned", "size 42", "lightweight", "men's", "women's"],
        "Shoes designed for running.",
    ),
    ("Clothing", "Tops", "T-Shirts"): (
        [
            "crew neck t-shirt",
            "graphic tee",
            "v-neck t-shirt",
            "long sleeve tee",
            "organic cotton t-shirt",
        ],
        ["100% cotton", "slim fit", "navy blue", "size M", "unisex", "printed"],
        "Short or long sleeved casual shirts without buttons.",
    ),
}
BRANDS = [
    "Acme",
    "Nordvik",
    "Blue Heron",
    "Casa Verde",
    "Kestrel",
    "Orbit",
    "Pallas",
    "Tamarind",
    "Zephyr",
    "Lumen",
]


def main() -> None:
    rng = random.Random(7)
    rows = []
    n = 0
    for path, (nouns, attrs, desc) in CATS.items():
        for _ in range(20):
            n += 1
            noun = rng.choice(nouns)
            a1, a2 = rng.sample(attrs, 2)
            brand = rng.choice(BRANDS)
            title = f"{brand} {a1} {noun}"
            description = f"{desc[:-1]}: {noun}, {a1}, {a2}." if rng.random() < 0.7 else ""
            rows.append(
                {
                    "id": f"demo-{n:04d}",
                    "title": title,
                    "description": description,
                    "category": " > ".join(path),
                }
            )
    rng.shuffle(rows)
    out = Path(__file__).resolve().parents[1] / "dualexpert" / "demo" / "catalogue.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "title", "description", "category"])
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} products to {out}")


if __name__ == "__main__":
    main()
