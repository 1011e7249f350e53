"""The nearest-neighbour expert's FAISS index, on the real MiniLM: scores, calibration, adding
labelled products, and the saved folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dualexpert.indexes import NeighbourIndex

TEXTS = [
    "espresso coffee beans 1kg dark roast",
    "ground filter coffee medium roast",
    "decaf coffee capsules for nespresso",
    "gaming laptop 16GB RAM 1TB SSD",
    "ultrabook laptop 14 inch 8GB",
    "15 inch notebook computer with touch screen",
    "trail running shoes for men",
    "women's road running trainers",
    "cushioned running shoes size 42",
]
LABELS = ["coffee"] * 3 + ["laptops"] * 3 + ["shoes"] * 3


@pytest.fixture(scope="module")
def index():
    return NeighbourIndex(k=5).fit(TEXTS, LABELS)


def test_scores_rank_the_nearest_products_class_first(index):
    queries = ["dark roast coffee beans", "a 13 inch laptop with 16GB", "running shoes for trails"]
    s = index.scores(queries)
    assert s.shape == (3, 3) and index.classes_ == ["coffee", "laptops", "shoes"]
    assert s.max(axis=1).tolist() == [0.0, 0.0, 0.0]  # relative to the row's best
    assert (s <= 0).all()
    assert s.argmax(axis=1).tolist() == [0, 1, 2]
    # an exact training text: its own class, at a cosine of 1 to itself
    sims, _ = index._index.search(index.embed([TEXTS[3]]), 1)
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert index.scores([TEXTS[3]]).argmax() == 1
    assert index.scores([]).shape == (0, 3)


def test_temperature_is_calibrated_leave_one_out(index):
    # fitted on the products themselves, each scored without itself: a sharp, finite scale
    plain = NeighbourIndex(k=5, calibrate=0).fit(TEXTS, LABELS)
    assert plain.temperature == 1.0
    # leave-one-out is what keeps it finite: with each product's own row, every product's
    # class would score 0 and the best temperature would run to the bound (200)
    assert 1.0 < index.temperature < 199.0


def test_classes_absent_from_the_k_nearest_get_the_kth_cosine():
    idx = NeighbourIndex(k=2, calibrate=0).fit(TEXTS, LABELS)
    s = idx.scores(["espresso beans"])[0]
    sims, ids = idx._index.search(idx.embed(["espresso beans"]), 2)
    assert set(np.asarray(LABELS)[ids[0]]) == {"coffee"}
    # laptops and shoes are not among the 2 nearest: both sit at the 2nd cosine
    assert s[1] == s[2] == pytest.approx(sims[0, 1] - sims[0, 0], abs=1e-6)


def test_add_counts_at_once_and_rejects_unknown_classes():
    idx = NeighbourIndex(k=3, calibrate=0).fit(TEXTS, LABELS)
    query = "stainless steel french press coffee maker"
    assert idx.scores([query]).argmax() == 0  # nearest to coffee so far
    idx.add(["stainless steel french press coffee maker 1 litre"], ["laptops"])  # say, relabelled
    assert len(idx) == len(TEXTS) + 1
    assert idx.scores([query]).argmax() == 1
    with pytest.raises(ValueError, match="not classes"):
        idx.add(["a tent"], ["camping"])
    with pytest.raises(ValueError, match="as many labels"):
        NeighbourIndex().fit(TEXTS, LABELS[:2])
    with pytest.raises(RuntimeError, match="not fitted"):
        NeighbourIndex().scores(["x"])


def test_saved_folder_round_trips_without_pickle(index, tmp_path):
    index.save(tmp_path / "nn")
    names = {p.name for p in (tmp_path / "nn").iterdir()}
    assert {"encoder", "index.faiss", "labels.npy", "neighbours.json"} <= names
    back = NeighbourIndex.load(tmp_path / "nn")
    assert back.temperature == index.temperature and back.classes_ == index.classes_
    queries = ["dark roast coffee beans", "running shoes"]
    assert np.allclose(back.scores(queries), index.scores(queries), atol=1e-5)
    assert back._source == str(tmp_path / "nn" / "encoder")  # its own copy of the encoder
    # a labels file that does not match the index is refused
    np.save(tmp_path / "nn" / "labels.npy", np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="disagree"):
        NeighbourIndex.load(tmp_path / "nn")
    meta = json.loads((tmp_path / "nn" / "neighbours.json").read_text())
    (tmp_path / "nn" / "neighbours.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="not a neighbour index"):
        NeighbourIndex.load(tmp_path / "nn")


def test_a_killed_fit_resumes_from_its_embedded_chunks(tmp_path, monkeypatch):
    from dualexpert.indexes import neighbours

    monkeypatch.setattr(neighbours, "CHUNK", 4)  # 9 texts: chunks of 4, 4 and 1
    calls = []
    real_embed = NeighbourIndex.embed

    def counting(self, texts):
        calls.append(len(texts))
        return real_embed(self, texts)

    monkeypatch.setattr(NeighbourIndex, "embed", counting)
    first = NeighbourIndex(k=5).fit(TEXTS, LABELS, work_dir=tmp_path / "emb")
    assert calls == [4, 4, 1] and len(list((tmp_path / "emb").glob("*.npy"))) == 3
    # as if killed after the first two chunks: the third file is missing
    sorted((tmp_path / "emb").glob("embeddings-000002-*.npy"))[0].unlink()
    calls.clear()
    again = NeighbourIndex(k=5).fit(TEXTS, LABELS, work_dir=tmp_path / "emb")
    assert calls == [1]  # only the missing chunk
    queries = ["dark roast coffee beans", "running shoes"]
    calls.clear()
    assert np.allclose(again.scores(queries), first.scores(queries), atol=1e-6)
    assert again.temperature == pytest.approx(first.temperature)
    # a damaged chunk file is embedded again, not an error
    sorted((tmp_path / "emb").glob("embeddings-000001-*.npy"))[0].write_bytes(b"not numpy")
    calls.clear()
    NeighbourIndex(k=5).fit(TEXTS, LABELS, work_dir=tmp_path / "emb")
    assert calls == [4]
    # other texts (or another encoder setting) are other files, never a stale reuse
    calls.clear()
    NeighbourIndex(k=5, max_length=32).fit(TEXTS, LABELS, work_dir=tmp_path / "emb")
    assert calls == [4, 4, 1]


def test_examples_are_each_class_products_nearest_to_the_text(index):
    titles = [f"title {i}" for i in range(len(TEXTS))]
    idx = NeighbourIndex(k=2, calibrate=0).fit(TEXTS, LABELS, titles=titles)
    query = "dark roast espresso beans"
    got = idx.examples(query, ["shoes", "coffee", "camping"], m=2)
    # the exact answer: within each class, the two texts with the highest cosine, nearest first
    sims = idx.embed(TEXTS) @ idx.embed([query])[0]
    for cls, shown in zip(["shoes", "coffee"], got[:2], strict=True):
        rows = [i for i, y in enumerate(LABELS) if y == cls]
        want = sorted(rows, key=lambda i: -sims[i])[:2]
        assert shown == [titles[i] for i in want]
    assert got[1][0] == "title 0"  # the espresso beans, as a human would pick
    # the k of the scores does not limit it (shoes are never among the 2 nearest); an unknown
    # class and m = 0 show nothing; a class with fewer products shows what it has
    assert got[2] == [] and idx.examples(query, ["coffee"], m=0) == [[]]
    assert len(idx.examples(query, ["coffee"], m=10)[0]) == 3
    # without titles the texts are shown; added products can be shown at once
    assert index.examples(query, ["coffee"], m=1) == [[TEXTS[0]]]
    idx.add(["dark roast espresso beans 500g"], ["laptops"], titles=["added"])
    assert idx.examples(query, ["laptops"], m=1) == [["added"]]
    with pytest.raises(ValueError, match="1 titles for 2 texts"):
        idx.add(["a", "b"], ["coffee", "coffee"], titles=["one"])


def test_titles_are_saved_and_an_index_saved_without_them_says_so(tmp_path):
    titles = ["Café “crème” 1 kg"] + [f"t{i}" for i in range(1, len(TEXTS))]
    idx = NeighbourIndex(k=3, calibrate=0).fit(TEXTS, LABELS, titles=titles)
    idx.save(tmp_path / "nn")
    back = NeighbourIndex.load(tmp_path / "nn")
    # the titles are read on first use, not by load (an index that is only scored never holds them)
    assert back.has_titles and back._titles is None
    assert back.examples("espresso beans", ["coffee"], m=1) == [["Café “crème” 1 kg"]]
    lines = (tmp_path / "nn" / "titles.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(TEXTS)
    back.save(tmp_path / "nn")  # saved again over the folder it was read from: unchanged
    assert (tmp_path / "nn" / "titles.jsonl").read_text(encoding="utf-8").splitlines() == lines
    (tmp_path / "nn" / "titles.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="8 titles for 9 products"):
        NeighbourIndex.load(tmp_path / "nn").examples("espresso", ["coffee"])
    (tmp_path / "nn" / "titles.jsonl").write_text("\n".join(lines[:-1] + ["{"]) + "\n")
    with pytest.raises(ValueError, match="line 9: not a JSON string"):
        NeighbourIndex.load(tmp_path / "nn").examples("espresso", ["coffee"])
    # adding to a loaded index reads its titles first, so the new ones line up with their rows
    (tmp_path / "nn" / "titles.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    grown = NeighbourIndex.load(tmp_path / "nn").add(["espresso beans 250g"], ["coffee"], ["new"])
    assert grown.examples("espresso beans 250g", ["coffee"], m=1) == [["new"]]
    # a folder saved before titles were kept still loads and scores, and says what to do
    (tmp_path / "nn" / "titles.jsonl").unlink()
    old = NeighbourIndex.load(tmp_path / "nn")
    assert not old.has_titles and old.scores(["espresso"]).shape == (1, 3)
    with pytest.raises(ValueError, match="fit_neighbours"):
        old.examples("espresso", ["coffee"])
    old.add(["espresso cups"], ["coffee"])  # adding to it keeps it without titles
    assert not old.has_titles


def test_examples_on_an_hnsw_index_stay_within_the_class(monkeypatch):
    from dualexpert.indexes import neighbours

    monkeypatch.setattr(neighbours, "HNSW_ABOVE", 0)  # every index is HNSW
    idx = NeighbourIndex(k=3, calibrate=0).fit(TEXTS, LABELS)
    assert "HNSW" in type(idx._index).__name__
    got = idx.examples("dark roast espresso beans", ["laptops", "coffee"], m=2)
    assert set(got[0]) <= set(TEXTS[3:6]) and len(got[0]) == 2
    assert got[1][0] == TEXTS[0] and set(got[1]) <= set(TEXTS[:3])
