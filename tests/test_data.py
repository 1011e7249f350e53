from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dualexpert.data import ColumnMap, Product, RecordError, context_text, load_catalogue


def _mwpd_row(id_: str, name: str, **fields: object) -> dict:
    """One MWPD-shaped record labelled A > B > C, with any other fields given."""
    return {"ID": id_, "Name": name, **fields, "lvl1": "A", "lvl2": "B", "lvl3": "C"}


def test_demo_catalogue(demo_catalogue):
    cat = load_catalogue(demo_catalogue)
    assert len(cat) == 240 and cat.skipped == 0
    assert all(p.category and len(p.category) == 3 for p in cat)


def test_jsonl_bad_record_names_file_line_field(tmp_path):
    f = tmp_path / "c.jsonl"
    rows = [_mwpd_row("1", "Silver charm", Description=""), _mwpd_row("2", "   ", Description="x")]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    with pytest.raises(RecordError) as ei:
        load_catalogue(f, "mwpd")
    assert ei.value.line == 2 and ei.value.field == "Name" and str(f) in str(ei.value)
    cat = load_catalogue(f, "mwpd", on_error="skip")
    assert len(cat) == 1 and cat.skipped == 2
    assert cat.errors[1].line == 3 and "invalid JSON" in str(cat.errors[1])


def test_csv_missing_column_and_level_gap(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("sku,name,cat\n1,Mouse,Electronics>Mice\n2,Shoe,\n")
    cmap = ColumnMap(id="sku", title="name", category="cat")
    cat = load_catalogue(f, cmap)
    assert cat[0].category == ("Electronics", "Mice") and cat[1].category is None
    with pytest.raises(RecordError, match=r"c.csv:2: field 'title': column is missing"):
        load_catalogue(f, ColumnMap(title="title"))
    g = tmp_path / "g.csv"
    g.write_text("title,l1,l2,l3\nMouse,Electronics,,Mice\n")
    with pytest.raises(RecordError, match="field 'l2'.*deeper level"):
        load_catalogue(g, ColumnMap(levels=["l1", "l2", "l3"]))


def test_parquet_and_broken_encoding(tmp_path):
    f = tmp_path / "c.parquet"
    table = pa.table({"title": ["Toy car \ufffd non-ride", "Laptop"], "category": ["Toys", "PC"]})
    pq.write_table(table, f)
    cat = load_catalogue(f)
    assert cat[0].title == "Toy car \ufffd non-ride"
    # invalid UTF-8 bytes in a CSV become U+FFFD rather than a crash
    g = tmp_path / "latin.csv"
    g.write_bytes(b"title,category\nCaf\xe9 cup,Kitchen\n")
    assert "\ufffd" in load_catalogue(g)[0].title


def test_mwpd_real(shared_data):
    cat = load_catalogue(shared_data / "mwpd" / "train.jsonl")
    assert len(cat) == 10012 and cat.skipped == 0
    # 281 leaf labels; one of them (Household Beds/Mattresses) sits under two lvl2 parents
    assert len({p[-1] for p in cat.paths}) == 281 and len(set(cat.paths)) == 282
    assert any("\ufffd" in p.category[-1] for p in cat)


def test_bigbasket_real(shared_data):
    cat = load_catalogue(shared_data / "bigbasket" / "products.csv", on_error="skip")
    assert len(cat) > 27000
    assert len(set(cat.paths)) == 597


def test_context_text_keeps_words_of_breadcrumbs_and_url_paths():
    assert context_text("https://shop.example.com/Womens-Tops/p/AB12345.html") == "Womens Tops"
    # parts split on "|", the host goes, words repeated across the parts are kept once
    got = context_text(
        "http://a.example.com/|http://a.example.com/new-nutritional-supplements/c/000001/",
        "/antiques/index.php",
        "Garden > Hoses",
    )
    assert got == "new nutritional supplements antiques index Garden > Hoses"
    assert context_text("Shoes | shoes", "") == "Shoes"
    assert len(context_text(" ".join(f"w{chr(97 + i % 26)}x{i}" for i in range(200)))) <= 200


def test_context_columns_are_read_and_enter_the_text_between_title_and_description(tmp_path):
    f = tmp_path / "c.jsonl"
    rows = [
        _mwpd_row(
            "1",
            "Cleveland Browns Kids Sweatpants",
            Description="Warm and soft.",
            CategoryText="Bottoms > Kids",
            URL="https://fan.example.com/cleveland-browns-kids-sweatpants/p-123",
        ),
        # no breadcrumb or URL: reads as an empty context, not an error
        _mwpd_row("2", "Locket", Description=""),
        _mwpd_row("3", "Cup", URL=7),
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cat = load_catalogue(f, "mwpd", on_error="skip")
    first, second = cat[0], cat[1]
    assert first.context == "Bottoms > Kids cleveland browns sweatpants"
    # context words the title already has are left out of the model input
    assert first.text() == "Cleveland Browns Kids Sweatpants . Bottoms > . Warm and soft."
    assert second.context == "" and second.text() == "Locket"
    # a context cell that is not text is the record's error, naming its field
    assert cat.skipped == 1 and cat.errors[0].line == 3 and cat.errors[0].field == "URL"
    # without context columns in the map, the same file reads as before
    plain = load_catalogue(f, ColumnMap(title="Name", description="Description"), "skip")
    assert (
        plain[0].context == ""
        and plain[0].text() == "Cleveland Browns Kids Sweatpants . Warm and soft."
    )


def test_label_augmentation_twins_keep_the_context():
    from dualexpert.domain.augment import augment
    from dualexpert.taxonomy import Taxonomy

    prods = [
        Product(
            id=str(i), title=f"item {i}", context="Garden > Hoses", category=("Garden", "Hoses")
        )
        for i in range(4)
    ]
    twins = augment(prods, Taxonomy.from_paths([p.category for p in prods]), ratio=1.0, per_leaf=0)
    assert len(twins) == 4 and all(t.context == "Garden > Hoses" for t in twins)


def test_a_list_of_products_names_its_bad_one():
    from dualexpert.data import as_products

    good = as_products(["mouse", {"title": "kettle", "id": "k1"}])
    assert [p.title for p in good] == ["mouse", "kettle"]
    with pytest.raises(ValueError, match=r"product 2 \(id 'b7'\): field 'title'"):
        as_products(["ok", {"title": "fine"}, {"id": "b7", "title": " "}])
    with pytest.raises(TypeError, match="product 1: expected a Product"):
        as_products(["ok", None])
    # one string is one product's title, not a list of one-letter titles
    with pytest.raises(TypeError, match="got a single str: wrap it in a list"):
        as_products("teapot")


def test_jsonl_columns_are_found_beyond_the_first_record(tmp_path):
    """A JSONL whose first record lacks a field still has it: the columns are those of the
    first records together, not of the first alone."""
    from dualexpert.data import iter_catalogue

    f = tmp_path / "sparse.jsonl"
    rows = [
        {"id": "a", "title": "steel knife"},
        {"id": "b", "title": "blue shirt", "category": "Clothing > Shirts", "description": "d"},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prods = list(iter_catalogue(f))
    assert prods[0].category is None and prods[1].category == ("Clothing", "Shirts")
    assert prods[1].description == "d"
