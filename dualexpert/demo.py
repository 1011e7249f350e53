"""The README's main job: end to end on the shipped demo catalogue with the embedded defaults."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .data import load_catalogue
from .metrics import categorisation_report

DEMO_CATALOGUE = Path(__file__).with_name("demo") / "catalogue.csv"


def split_demo(seed: int = 0, test_share: float = 0.3):
    prods = load_catalogue(DEMO_CATALOGUE).products
    rng = random.Random(seed)
    idx = list(range(len(prods)))
    rng.shuffle(idx)
    cut = int(len(idx) * (1 - test_share))
    return [prods[i] for i in idx[:cut]], [prods[i] for i in idx[cut:]]


def _score(name: str, ranker: Any, train, test, fit_s: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    topk = ranker.predict_topk(test, k=5)
    pred_s = time.perf_counter() - t0
    rep = categorisation_report(
        [p.category for p in test],
        [c[0].path for c in topk],
        [[x.path for x in c] for c in topk],
        Counter(p.category for p in train),
        ks=(1, 3, 5),
    )
    return {
        "system": name,
        "lvl3_accuracy": rep["lvl3"]["accuracy"],
        "lvl3_f1_weighted": rep["lvl3"]["f1_weighted"],
        "lvl3_f1_macro": rep["lvl3"]["f1_macro"],
        "top3_recall": rep["leaf"]["top3_recall"],
        "fit_seconds": fit_s,
        "products_per_second": len(test) / pred_s if pred_s else 0.0,
    }


def run_demo(out_dir: str | Path = "runs/demo", epochs: float = 4.0, seed: int = 0) -> dict:
    """Train the domain expert on 70% of the demo catalogue, compare with TF-IDF on the rest."""
    from .baselines import TfidfLinearRanker
    from .domain import DomainExpert

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, test = split_demo(seed)
    rows = []
    t0 = time.perf_counter()
    tfidf = TfidfLinearRanker().fit(train)
    rows.append(_score("tfidf_linear", tfidf, train, test, time.perf_counter() - t0))
    expert = DomainExpert(
        epochs=epochs, batch_size=16, learning_rate=2e-4, seed=seed, save_steps=50, logging_steps=10
    )
    t0 = time.perf_counter()
    expert.fit(train, output_dir=out / "checkpoints")
    fit_s = time.perf_counter() - t0
    expert.save(out / "domain-expert")
    rows.append(_score("domain_expert", expert, train, test, fit_s))
    result = {"n_train": len(train), "n_test": len(test), "rows": rows}
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    return result
