from __future__ import annotations

import json

import pytest

from dualexpert.taxonomy import (
    AmbiguousCategoryError,
    CycleError,
    Taxonomy,
    UnknownCategoryError,
)

MWPD_PATHS = [
    ("64000000_Personal Accessories", "64010000_Personal Accessories", "64010100_Jewellery"),
    ("65000000_Computing", "65010000_Computers/Video Games", "65010700_Computer Peripherals"),
    (
        "65000000_Computing",
        "65010000_Computers/Video Games",
        "65010800_Toy Vehicles \ufffd Non-ride",
    ),
]


def test_from_paths_representations():
    tax = Taxonomy.from_paths(MWPD_PATHS)
    assert len(tax.leaves) == 3
    assert len(tax) == 3 + 2 + 2
    leaf = tax.by_path(MWPD_PATHS[0])
    assert leaf.label == "64010100_Jewellery"  # raw label kept
    assert tax.leaf_name(leaf.id) == "Jewellery"  # code stripped for display
    assert tax.full_path(leaf.id) == "Personal Accessories > Personal Accessories > Jewellery"
    assert tax.descriptive_name(leaf.id) == "Jewellery (Personal Accessories)"
    periph = tax.by_path(MWPD_PATHS[1])
    assert tax.represent(periph.id, "descriptive") == (
        "Computer Peripherals (Computing › Computers/Video Games)"
    )
    broken = tax.by_path(MWPD_PATHS[2])
    assert "\ufffd" in broken.label  # U+FFFD kept as given
    assert [a.label for a in tax.ancestors(broken.id)] == list(MWPD_PATHS[2])
    with pytest.raises(ValueError):
        tax.represent(leaf.id, "nonsense")


def test_lookups_and_unknown():
    tax = Taxonomy.from_paths([("A", "B", "C"), ("A", "D")])
    assert tax.by_path("A > B > C").id == "A > B > C"
    assert tax.get("A > D").is_leaf
    assert tax.resolve("C").path == ("A", "B", "C")
    with pytest.raises(UnknownCategoryError, match="unknown category path 'A > X'"):
        tax.by_path(("A", "X"))
    with pytest.raises(UnknownCategoryError, match="unknown category id"):
        tax.get("nope")


def test_ambiguous_names_refused():
    tax = Taxonomy.from_paths([("Fruit", "Apple"), ("Electronics", "Apple")])
    assert "apple" in tax.ambiguous_names()
    with pytest.raises(AmbiguousCategoryError, match="ambiguous.*Electronics.*Fruit"):
        tax.by_name("Apple")
    # the full path still works
    assert tax.by_path("Fruit > Apple").parent == "Fruit"


def test_cycle_detected():
    with pytest.raises(CycleError, match="cycle"):
        Taxonomy.from_parent_links([("a", "A", "c"), ("b", "B", "a"), ("c", "C", "b")])
    with pytest.raises(UnknownCategoryError, match="unknown parent"):
        Taxonomy.from_parent_links([("a", "A", "zz")])


def test_save_load_round_trip(tmp_path):
    tax = Taxonomy.from_paths(MWPD_PATHS)
    tax.save(tmp_path / "taxonomy.json")
    back = Taxonomy.load(tmp_path / "taxonomy.json")
    assert [c.id for c in back.leaves] == [c.id for c in tax.leaves]
    assert back.descriptive_name(back.leaves[0].id) == tax.descriptive_name(tax.leaves[0].id)


def test_bestbuy_small_file(tmp_path):
    data = [
        {"id": "r", "name": "Root", "path": [{"id": "r", "name": "Root"}]},
        {
            "id": "x",
            "name": "TVs",
            "path": [{"id": "r", "name": "Root"}, {"id": "x", "name": "TVs"}],
        },
    ]
    p = tmp_path / "categories.json"
    p.write_text(json.dumps(data))
    tax = Taxonomy.load(p)
    assert tax.full_path("x") == "Root > TVs"


def test_real_taxonomies(shared_data):
    t = shared_data / "taxonomies"
    shop = Taxonomy.load(t / "shopify" / "categories.en.txt")
    assert len(shop) == 10595 and len(shop.leaves) == 8516
    assert shop.full_path("ap-2").startswith("Animals & Pet Supplies > ")
    goog = Taxonomy.load(t / "google" / "google_2021-09-21_full_names.yml")
    assert len(goog) == 5595
    assert goog.get("3237").path == ("Animals & Pet Supplies", "Live Animals")
    bb = Taxonomy.load(t / "bestbuy" / "categories.json")
    assert len(bb) >= 4584
