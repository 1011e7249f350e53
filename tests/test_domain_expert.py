"""A small real training run on the shipped demo catalogue (MiniLM from PyPI)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from dualexpert.data import load_catalogue
from dualexpert.domain import DomainExpert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split():
    from tests.conftest import DEMO

    prods = load_catalogue(DEMO).products
    rng = random.Random(0)
    idx = list(range(len(prods)))
    rng.shuffle(idx)
    train = [prods[i] for i in idx[:160]]
    test = [prods[i] for i in idx[160:]]
    return train, test


@pytest.fixture(scope="module")
def fitted(split, tmp_path_factory):
    train, _ = split
    expert = DomainExpert(
        encoder="minilm",
        epochs=4,
        batch_size=16,
        learning_rate=2e-4,
        save_steps=20,
        logging_steps=5,
        seed=3,
    )
    out = tmp_path_factory.mktemp("ckpt")
    expert.fit(train, output_dir=out, progress=False)
    return expert, out


def test_learns_far_above_chance(fitted, split):
    expert, _ = fitted
    _, test = split
    pred = expert.predict(test)
    acc = np.mean([p == " > ".join(t.category) for p, t in zip(pred, test, strict=True)])
    chance = 1 / len(expert.classes_)
    assert acc >= 0.8, f"held-out accuracy {acc:.3f} (chance {chance:.3f})"
    # both phases ran: the log shows phase 1 and then phase 2
    phases = [x["phase"] for x in expert.train_log if "phase" in x]
    assert phases[0] == 1 and phases[-1] == 2
    phase1 = [x["loss"] for x in expert.train_log if "loss" in x and x["phase"] == 1]
    assert phase1[-1] < phase1[0] / 2


def test_topk_shapes_and_probabilities(fitted, split):
    expert, _ = fitted
    _, test = split
    topk = expert.predict_topk(test[:5], k=4)
    assert [len(c) for c in topk] == [4] * 5
    for cands in topk:
        probs = [c.probability for c in cands]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert all(c.id in expert.classes_ for c in cands)
    full = expert.predict_proba(test[:5])
    assert np.allclose(full.sum(1), 1.0, atol=1e-4)


def test_save_load_identical(fitted, split, tmp_path):
    expert, _ = fitted
    _, test = split
    expert.save(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"dualexpert.json", "model.safetensors", "taxonomy.json", "tokenizer.json"} <= names
    assert "config.json" not in names  # the folder does not pretend to be a HF model
    back = DomainExpert.load(tmp_path / "m")
    assert back.classes_ == expert.classes_
    assert np.allclose(back.predict_proba(test), expert.predict_proba(test), atol=1e-6)


def test_saved_folder_versions_and_old_folders(fitted, split, tmp_path):
    import json
    import shutil

    expert, _ = fitted
    _, test = split
    expert.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "dualexpert.json").read_text())
    assert manifest["format"] == "domain-expert" and manifest["format_version"] == 2
    assert manifest["library_version"] and manifest["classes"] == expert.classes_
    want = expert.predict_proba(test)

    # a folder saved before 0.2 (its manifest was config.json) still loads, and re-saving
    # converts it
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "m", old)
    legacy = {k: manifest[k] for k in ("config", "classes", "encoder_config")}
    (old / "config.json").write_text(json.dumps({"dualexpert": "domain-expert", **legacy}))
    (old / "dualexpert.json").unlink()
    back = DomainExpert.load(old)
    assert np.allclose(back.predict_proba(test), want, atol=1e-6)
    back.save(old)
    assert (old / "dualexpert.json").is_file() and not (old / "config.json").exists()

    # another library version: loads with a warning; a newer format: refused, with the fix
    manifest["library_version"] = "0.0.1"
    (tmp_path / "m" / "dualexpert.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="0.0.1"):
        DomainExpert.load(tmp_path / "m")
    manifest["format_version"] = 99
    (tmp_path / "m" / "dualexpert.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="upgrade dualexpert"):
        DomainExpert.load(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="dualexpert.json"):
        DomainExpert.load(tmp_path)


def test_parts_that_do_not_belong_together_are_refused(fitted, tmp_path, monkeypatch):
    import shutil

    expert, _ = fitted
    expert.save(tmp_path / "m")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left
    bad = tmp_path / "no-tokenizer"
    shutil.copytree(tmp_path / "m", bad)
    (bad / "tokenizer.json").unlink()  # used to load with a 5-token vocabulary
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        DomainExpert.load(bad)
    no_tax = tmp_path / "no-taxonomy"
    shutil.copytree(tmp_path / "m", no_tax)
    (no_tax / "taxonomy.json").unlink()
    with pytest.raises(FileNotFoundError, match="taxonomy.json"):
        DomainExpert.load(no_tax)
    broken = tmp_path / "broken-manifest"
    shutil.copytree(tmp_path / "m", broken)
    (broken / "dualexpert.json").write_text('{"format": "domain-exp')
    with pytest.raises(ValueError, match="dualexpert.json is not valid JSON"):
        DomainExpert.load(broken)
    cut = tmp_path / "truncated"
    shutil.copytree(tmp_path / "m", cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        DomainExpert.load(cut)
    # a save that dies halfway (after the new weights, before the rest) leaves the old folder
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def die(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(type(expert.taxonomy), "save", die)
    with pytest.raises(OSError, match="disk full"):
        expert.save(tmp_path / "m")
    monkeypatch.undo()
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    DomainExpert.load(tmp_path / "m")


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(TypeError, match="epoch"):
        DomainExpert(epoch=3)
    with pytest.raises(TypeError, match="batch_size"):
        DomainExpert(batch_size="32")
    expert = DomainExpert(epochs=2)
    with pytest.raises(ValueError):
        expert.config.quantize = "yes"


def test_checkpoints_written_and_resume(fitted, split):
    expert, out = fitted
    train, _ = split
    ckpts = sorted(out.glob("checkpoint-*"))
    assert ckpts, "the trainer wrote no checkpoint"
    # Resuming from the final checkpoint trains no further steps and restores the weights.
    again = DomainExpert(**{**expert.config.__dict__, "extra": {}})
    again.fit(train, output_dir=out, progress=False)
    assert again.train_log[-1]["step"] == expert.train_log[-1]["step"]
    assert (out / "lexical" / "lexical.json").is_file()  # reused, not refitted
    assert again.lexical_.temperature == expert.lexical_.temperature
    assert (out / "neighbours" / "neighbours.json").is_file()  # reused too
    assert again.neighbours_.temperature == expert.neighbours_.temperature


def test_label_init_starts_as_nearest_label_classifier():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from dualexpert.domain.model import EncoderClassifier
    from dualexpert.models import resolve_encoder

    labels = [
        "Food > Beverages > Coffee",
        "Electronics > Computing > Laptops",
        "Clothing > Footwear > Running Shoes",
        "Home > Garden > Garden Tools",
    ]
    path = resolve_encoder("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    model = EncoderClassifier(AutoModel.from_pretrained(path), len(labels)).eval()
    model.init_head_from_labels(tok, labels)
    queries = [
        "espresso coffee beans",
        "gaming laptop 16GB RAM",
        "trail running shoes",
        "pruning shears for the garden",
    ]
    with torch.inference_mode():
        logits = model(**tok(queries, padding=True, return_tensors="pt"))["logits"]
    assert logits.argmax(1).tolist() == [0, 1, 2, 3]  # right before any training


def test_label_summaries_give_opaque_categories_their_meaning(tmp_path):
    """With ``label_summaries`` the head starts at path + summary: categories whose names say
    nothing (new or coded ones) are told apart before any training; without, they are not."""
    import torch
    from dualexpert.indexes import SummaryIndex
    from transformers import AutoModel, AutoTokenizer

    from dualexpert.domain.expert import LABEL_SUMMARY_TOKENS, label_texts
    from dualexpert.domain.model import EncoderClassifier
    from dualexpert.models import resolve_encoder
    from dualexpert.taxonomy import Taxonomy

    paths = [("Dept 1", f"Aisle {i}") for i in range(4)]
    meaning = [
        "Coffee beans, ground coffee and espresso for brewing at home.",
        "Laptop computers: notebooks and gaming laptops with RAM and SSD storage.",
        "Running shoes and trail sneakers for joggers.",
        "Garden tools such as pruning shears, rakes and spades.",
    ]
    tax = Taxonomy.from_paths(paths)
    ids = [tax.by_path(p).id for p in paths]
    folder = tmp_path / "summaries"
    index = SummaryIndex()
    for cid, text in zip(ids[:3], meaning[:3], strict=True):  # the last one has none
        index.update(cid, text)
    index.save(folder)

    def nearest_label(summaries):
        texts = label_texts(tax, ids, summaries)
        model = EncoderClassifier(AutoModel.from_pretrained(path), len(ids)).eval()
        model.init_head_from_labels(tok, texts, max_length=LABEL_SUMMARY_TOKENS)
        with torch.inference_mode():
            logits = model(**tok(queries, padding=True, return_tensors="pt"))["logits"]
        return texts, logits.argmax(1).tolist()

    path = resolve_encoder("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    queries = ["espresso coffee beans", "gaming laptop 16GB RAM", "trail running shoes"]
    texts, with_summaries = nearest_label(str(folder))
    assert texts[0] == "Dept 1 > Aisle 0: " + meaning[0]
    assert texts[3] == "Dept 1 > Aisle 3"  # no summary: the path alone
    assert with_summaries == [0, 1, 2]
    _, paths_only = nearest_label(None)
    assert paths_only != [0, 1, 2]

    stray = SummaryIndex()
    stray.update("Dept 9 > Aisle 9", "Something else.")
    stray.save(tmp_path / "stray")
    with pytest.raises(ValueError, match="name no category of this taxonomy"):
        label_texts(tax, ids, str(tmp_path / "stray"))


def test_int8_quantised_prediction_agrees(fitted, split):
    expert, _ = fitted
    _, test = split
    base = expert.predict(test)
    q = DomainExpert(**{**expert.config.__dict__, "quantize": True})
    q.model, q.tokenizer, q.taxonomy, q.classes_ = (
        expert.model,
        expert.tokenizer,
        expert.taxonomy,
        expert.classes_,
    )
    agree = np.mean([a == b for a, b in zip(base, q.predict(test), strict=True)])
    assert agree >= 0.9


def test_lexical_expert_is_fused_saved_and_reloaded(fitted, split, tmp_path):
    """The lexical expert ships inside the model folder and changes the distribution; the
    encoder's own probabilities stay available; a folder without it still loads."""
    import shutil

    expert, _ = fitted
    _, test = split
    assert expert.lexical_ is not None
    enc = expert.predict_proba(test, fuse=False)
    fused = expert.predict_proba(test)
    assert np.allclose(fused.sum(1), 1.0, atol=1e-4)
    assert not np.allclose(enc, fused, atol=1e-3)  # the lexical expert has a say
    margins = expert.lexical_margins([p.text() for p in test])
    assert margins.shape == enc.shape
    assert np.allclose(expert.fuse(enc, margins, 0.0), enc)
    assert expert.lexical_.temperature > 0 and expert.lexical_.temperature != 1.0  # calibrated
    assert expert.fusion_scale() == expert.config.lexical_weight * expert.lexical_.temperature
    want = expert.fuse(enc, margins, expert.fusion_scale())
    near = expert.neighbour_scores([p.text() for p in test])
    want = expert.fuse(want, near, expert.neighbour_scale())
    assert np.allclose(fused, want, atol=1e-6)

    expert.save(tmp_path / "m")
    assert (tmp_path / "m" / "lexical" / "lexical.safetensors").is_file()
    back = DomainExpert.load(tmp_path / "m")
    assert np.allclose(back.predict_proba(test), fused, atol=1e-5)

    # as saved before the lexical expert and the neighbour index existed
    for part in ("lexical", "neighbours"):
        shutil.rmtree(tmp_path / "m" / part)
    manifest = json.loads((tmp_path / "m" / "dualexpert.json").read_text())
    manifest["files"] = {
        k: v for k, v in manifest["files"].items() if not k.startswith(("lexical", "neighbours"))
    }
    (tmp_path / "m" / "dualexpert.json").write_text(json.dumps(manifest))
    old = DomainExpert.load(tmp_path / "m")
    assert old.lexical_ is None and old.config.lexical is False
    assert old.neighbours_ is None and old.config.neighbours is False
    assert np.allclose(old.predict_proba(test), enc, atol=1e-5)


def _same_encoder(expert: DomainExpert, **config) -> DomainExpert:
    """A DomainExpert sharing ``expert``'s trained parts, with ``config`` changed."""
    other = DomainExpert(**{**expert.config.__dict__, **config, "extra": {}})
    other.model, other.tokenizer = expert.model, expert.tokenizer
    other.taxonomy, other.classes_ = expert.taxonomy, expert.classes_
    other.lexical_, other.class_counts_ = expert.lexical_, expert.class_counts_
    return other


def test_neighbour_index_is_fused_saved_and_refitted(fitted, split, tmp_path):
    """The neighbour index holds the real training products, ships in the model folder, has
    its say in the fused distribution, and can be rebuilt on more labelled products without
    retraining."""
    expert, _ = fitted
    train, test = split
    index = expert.neighbours_
    assert index is not None and len(index) == len(train)  # no augmentation twins
    assert 1.0 < index.temperature < 199.0  # calibrated leave-one-out
    texts = [p.text() for p in test]
    near = expert.neighbour_scores(texts)
    assert near.shape == (len(test), len(expert.classes_))
    assert np.allclose(near.max(axis=1), 0.0) and (near <= 0).all()
    # a training product's own class is its best neighbour class (cosine 1 to itself)
    own = expert.neighbour_scores([train[0].text()])[0]
    assert expert.classes_[int(own.argmax())] == expert.taxonomy.by_path(train[0].category).id
    without = _same_encoder(expert, neighbours=False)
    assert not np.allclose(without.predict_proba(test), expert.predict_proba(test), atol=1e-3)

    # products labelled after training count at once: relabelled copies of a held-out product
    # move it to their class
    target = test[0]
    other = next(c for c in expert.classes_ if c != expert.predict([target])[0])
    path = list(expert.taxonomy.get(other).path)
    new = [
        {"id": f"new{i}", "title": target.title, "description": target.description,
         "category": path}
        for i in range(3)
    ]  # fmt: skip
    again = _same_encoder(expert).fit_neighbours([*train, *new])
    assert len(again.neighbours_) == len(train) + 3
    assert again.neighbour_scores([target.text()])[0].argmax() == expert.classes_.index(other)

    expert.save(tmp_path / "m")
    assert (tmp_path / "m" / "neighbours" / "index.faiss").is_file()
    manifest = json.loads((tmp_path / "m" / "dualexpert.json").read_text())
    assert "neighbours/index.faiss" in manifest["files"]  # hashed with the rest
    back = DomainExpert.load(tmp_path / "m")
    assert np.allclose(back.neighbour_scores(texts), near, atol=1e-5)
    assert np.allclose(back.predict_proba(test), expert.predict_proba(test), atol=1e-5)
    back.config.neighbour_weight = 0.0  # the weight is set on a loaded model, no retraining
    assert np.allclose(back.predict_proba(test), without.predict_proba(test), atol=1e-5)


def test_lexical_expert_alone(split, tmp_path):
    from dualexpert.domain.lexical import LexicalExpert

    train, test = split
    labels = [" > ".join(p.category) for p in train]
    lex = LexicalExpert(keep=0.5).fit([p.text() for p in train], labels)
    m = lex.decision_function([p.text() for p in test])
    assert m.shape == (len(test), len(set(labels)))
    acc = np.mean(
        [lex.classes_[i] == " > ".join(p.category) for i, p in zip(m.argmax(1), test, strict=True)]
    )
    assert acc >= 0.7, acc
    # the NumPy margins are scikit-learn's transform times the kept coefficients
    from scipy.sparse import csr_matrix, hstack

    from dualexpert.text import fixed_tfidf

    texts = [p.text() for p in test]
    parts = [
        fixed_tfidf("word", (1, 2), lex._vocab["word"], lex._idf["word"]),
        fixed_tfidf("char_wb", (2, 5), lex._vocab["char"], lex._idf["char"]),
    ]
    X = hstack([tfidf.transform(counts.transform(texts)) for counts, tfidf in parts]).tocsr()
    coef = csr_matrix(lex._coef[::-1], shape=(X.shape[1], len(lex.classes_)))
    assert np.abs(np.asarray((X @ coef).todense()) + lex._intercept - m).max() < 1e-5
    lex.save(tmp_path / "lex")
    back = LexicalExpert.load(tmp_path / "lex")
    assert np.allclose(back.decision_function([p.text() for p in test]), m, atol=1e-6)
    assert back.temperature == lex.temperature
    (tmp_path / "lex" / "vocab.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        LexicalExpert.load(tmp_path / "lex")
    with pytest.raises(ValueError, match="keep"):
        LexicalExpert(keep=0)


def test_lexical_class_weight_auto_keeps_balanced_unless_it_costs_accuracy(
    split, tmp_path, monkeypatch
):
    from dualexpert.domain import lexical
    from dualexpert.domain.lexical import LexicalExpert

    train, _ = split
    texts, labels = [p.text() for p in train], [" > ".join(p.category) for p in train]
    lex = LexicalExpert().fit(texts, labels)  # class_weight="auto" by default
    assert set(lex.selection_) == {"none", "balanced"}
    sel = lex.selection_
    balanced_ok = sel["balanced"] >= sel["none"] - lexical.BALANCED_TOLERANCE
    assert lex.class_weight == ("balanced" if balanced_ok else None)
    # a tolerance of 1 always keeps balanced, one of -1 never does
    monkeypatch.setattr(lexical, "BALANCED_TOLERANCE", 1.0)
    assert LexicalExpert().fit(texts, labels).class_weight == "balanced"
    monkeypatch.setattr(lexical, "BALANCED_TOLERANCE", -1.0)
    assert LexicalExpert().fit(texts, labels).class_weight is None
    monkeypatch.undo()
    assert all(0 <= v <= 1 for v in lex.selection_.values())
    # the kept weighting's SVM is the one saved: the same as fitting it by name
    fixed = LexicalExpert(class_weight=lex.class_weight).fit(texts, labels)
    assert np.allclose(fixed.decision_function(texts[:5]), lex.decision_function(texts[:5]))
    assert fixed.temperature == pytest.approx(lex.temperature)
    lex.save(tmp_path / "lex")
    back = LexicalExpert.load(tmp_path / "lex")
    assert back.class_weight == lex.class_weight and back.selection_ == lex.selection_
    with pytest.raises(ValueError, match="class_weight"):
        LexicalExpert(class_weight="inverse")


def test_synthetic_products_train_but_stay_out_of_the_prior(split, tmp_path):
    """``fit(synthetic=...)`` trains on extra products without counting them in the class
    prior; with them the prior adjustment defaults to tau = 1, is applied after fusion, and is
    saved with the model; ``prior_adjustment=0`` turns it off."""
    from collections import Counter

    from dualexpert.data import Product

    train, test = split
    rare = train[0].category
    extra = [Product(id=f"syn:{i}", title=f"synthetic item {i}", category=rare) for i in range(5)]
    cfg = dict(epochs=0.3, batch_size=16, max_length=16, seed=0, label_augmentation=False)
    expert = DomainExpert(**cfg).fit(train, synthetic=extra, progress=False)
    real = Counter(p.category for p in train)
    counts = dict(zip(expert.classes_, expert.class_counts_, strict=True))
    assert counts == {expert.taxonomy.by_path(c).id: n for c, n in real.items()}
    assert expert.prior_adjustment_ == 1.0

    fused = expert.fused_proba(
        expert.predict_proba(test[:8], fuse=False), [p.text() for p in test[:8]]
    )
    assert len(expert.neighbours_) == len(train)  # the synthetic products are not neighbours
    got = expert.predict_proba(test[:8])
    assert np.allclose(got, expert.adjust_for_prior(fused), atol=1e-6)
    c = np.asarray(expert.class_counts_, dtype=float) + 1
    ratio = got / fused  # proportional to 1 / prior, row by row
    assert np.allclose(ratio / ratio[:, :1], (c[0] / c)[None, :], rtol=1e-4)

    expert.save(tmp_path / "m")
    back = DomainExpert.load(tmp_path / "m")
    assert back.class_counts_ == expert.class_counts_ and back.prior_adjustment_ == 1.0
    assert np.allclose(back.predict_proba(test[:8]), got, atol=1e-5)
    # tau chosen at load time instead of the saved one: 0.5, and 0 (the fusion as it was)
    half = DomainExpert.load(tmp_path / "m", prior_adjustment=0.5)
    assert half.prior_adjustment_ == 0.5
    assert np.allclose(half.predict_proba(test[:8]), expert.adjust_for_prior(fused, 0.5), atol=1e-5)
    none = DomainExpert.load(tmp_path / "m", prior_adjustment=0)
    assert np.allclose(none.predict_proba(test[:8]), fused, atol=1e-5)
    with pytest.raises(TypeError, match="prior_adjustment: Input should be greater than or"):
        DomainExpert.load(tmp_path / "m", prior_adjustment=-1)  # as DomainExpert(...) refuses it
    from dualexpert.pipeline import load_dual_expert  # what classify and Ray build

    assert load_dual_expert(tmp_path / "m").retriever.domain.prior_adjustment_ == 1.0
    dual = load_dual_expert(tmp_path / "m", prior_adjustment=0.5)
    assert dual.retriever.domain.prior_adjustment_ == 0.5

    manifest = json.loads((tmp_path / "m" / "dualexpert.json").read_text())
    del manifest["class_counts"], manifest["prior_adjustment"]  # as saved before they existed
    (tmp_path / "m" / "dualexpert.json").write_text(json.dumps(manifest))
    old = DomainExpert.load(tmp_path / "m")
    assert old.class_counts_ is None and np.allclose(old.predict_proba(test[:8]), fused, atol=1e-5)

    off = DomainExpert(**cfg, prior_adjustment=0, lexical=False, neighbours=False)
    off.fit(train, synthetic=extra, progress=False)
    assert off.prior_adjustment_ == 0.0
    assert np.allclose(off.predict_proba(test[:8]), off.encoder_proba(test[:8]))
    assert DomainExpert(**cfg, lexical=False).fit(train, progress=False).prior_adjustment_ == 0


def test_teacher_distillation_learns_from_the_teacher_not_the_labels(
    fitted, split, tmp_path, monkeypatch
):
    """``teacher=FOLDER``: the student learns the saved teacher's softened distribution beside
    the labels. Trained on shuffled labels with the soft term alone (``teacher_weight=1``), it
    still classifies held-out products as the teacher does, where the same student without the
    teacher learns the noise. The teacher's targets are cached in the checkpoint folder, so a
    resumed run does not load the teacher again; a teacher that lacks a class is refused."""
    from dualexpert.data import Product

    teacher, _ = fitted
    train, test = split
    teacher.save(tmp_path / "teacher")
    cats = [p.category for p in train]
    random.Random(1).shuffle(cats)
    noisy = [Product(id=p.id, title=p.title, description=p.description, category=c)
             for p, c in zip(train, cats, strict=True)]  # fmt: skip
    cfg = dict(epochs=2, batch_size=16, max_length=16, seed=0, label_augmentation=False,
               lexical=False, save_steps=10)  # fmt: skip
    kd_cfg = dict(cfg, teacher=str(tmp_path / "teacher"), teacher_weight=1.0)

    def accuracy(expert: DomainExpert) -> float:
        pred = expert.predict(test)
        return float(
            np.mean([p == " > ".join(t.category) for p, t in zip(pred, test, strict=True)])
        )

    out = tmp_path / "ckpt"
    kd = DomainExpert(**kd_cfg).fit(noisy, output_dir=out, progress=False)
    plain = DomainExpert(**cfg).fit(noisy, output_dir=tmp_path / "plain", progress=False)
    # measured: 0.975 against 0.44 (the plain student keeps some of its label-initialised head)
    assert accuracy(kd) >= 0.85 and accuracy(plain) <= accuracy(kd) - 0.3
    with np.load(out / "teacher-targets.npz", allow_pickle=False) as z:
        assert z["idx"].shape == (len(train), min(32, len(teacher.classes_)))
        assert np.allclose(z["p"].sum(1), 1.0, atol=1e-5)
        # the student's classes may come in another order than the teacher's: compare by id
        mine = np.array(kd.classes_)[z["idx"][np.arange(5), z["p"][:5].argmax(1)]]
        theirs = np.array(teacher.classes_)[teacher.encoder_proba(noisy[:5]).argmax(1)]
        assert (mine == theirs).all()

    def no_teacher(*a, **k):
        raise AssertionError("the teacher was loaded again")

    monkeypatch.setattr(DomainExpert, "load", no_teacher)
    again = DomainExpert(**kd_cfg).fit(noisy, output_dir=out, progress=False)
    assert np.allclose(again.encoder_proba(test[:8]), kd.encoder_proba(test[:8]), atol=1e-5)
    monkeypatch.undo()

    more = [*train, Product(id="new", title="a new kind of thing", category=("New", "Leaf"))]
    with pytest.raises(ValueError, match="teacher .* not among its classes"):
        DomainExpert(**kd_cfg).fit(more, progress=False)
