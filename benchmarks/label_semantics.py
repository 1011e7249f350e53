"""Label semantics: how well the domain expert's head classifies *before* any training.

With ``label_init`` the head starts at the encoder's embedding of each class's label text, so
the untrained model is a nearest-label classifier. This scores that classifier on the test
products for each kind of label text: the full path (the default, 32 tokens), and with
``--summaries`` (a ``dualexpert summarize`` folder) the path followed by the LLM-written
summary (128 tokens, as ``DomainExpert(label_summaries=...)`` starts it) and the summary alone.
It is what a category with no training products gets, and where training starts from.

    python benchmarks/label_semantics.py --dataset mwpd --summaries runs/summaries/mwpd-64
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.domain_expert import load_dataset  # noqa: E402
from dualexpert.evaluation.metrics import categorisation_report  # noqa: E402


def nearest_label(encoder: str, texts: list[str], max_length: int, products, read: int):
    """The top-10 classes of each product under a head started at ``texts``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from dualexpert.domain.model import EncoderClassifier
    from dualexpert.models import resolve_encoder

    path = resolve_encoder(encoder)
    tok = AutoTokenizer.from_pretrained(path)
    model = EncoderClassifier(AutoModel.from_pretrained(path), len(texts)).eval()
    with torch.inference_mode():
        model.init_head_from_labels(tok, texts, max_length=max_length)
        top = []
        for i in range(0, len(products), 64):
            enc = tok(
                [p.text() for p in products[i : i + 64]],
                truncation=True,
                max_length=read,
                padding=True,
                return_tensors="pt",
            )
            top.append(model(**enc)["logits"].topk(10, dim=1).indices)
    return torch.cat(top).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="mwpd", choices=["mwpd", "bigbasket"])
    ap.add_argument("--seed", type=int, default=42, help="BigBasket's split")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--max-length", type=int, default=32, help="tokens of product text read")
    ap.add_argument("--summaries", type=Path, help="a summary index folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/label_semantics.json")
    args = ap.parse_args()

    from dualexpert.domain import DomainExpert
    from dualexpert.domain.expert import LABEL_SUMMARY_TOKENS, label_texts
    from dualexpert.taxonomy import Taxonomy

    train, test = load_dataset(args.dataset, args.seed)
    expert = DomainExpert(internal_nodes="class")
    expert.taxonomy = Taxonomy.from_paths(p.category for p in train)
    expert.classes_ = expert._classes(train)  # the classes training would have
    kinds = {"full path": (label_texts(expert.taxonomy, expert.classes_, None), 32)}
    if args.summaries:
        kinds["path + summary"] = (
            label_texts(expert.taxonomy, expert.classes_, str(args.summaries)),
            LABEL_SUMMARY_TOKENS,
        )
        from dualexpert.indexes import SummaryIndex

        summaries = SummaryIndex.load(args.summaries).summaries
        paths = kinds["full path"][0]
        kinds["summary alone"] = (
            [summaries.get(c, t) for c, t in zip(expert.classes_, paths, strict=True)],
            LABEL_SUMMARY_TOKENS,
        )
    train_counts = Counter(p.category for p in train)
    rows = {}
    for name, (texts, length) in kinds.items():
        t0 = time.perf_counter()
        top = nearest_label(args.encoder, texts, length, test, args.max_length)
        ranked = [[expert.taxonomy.get(expert.classes_[j]).path for j in row] for row in top]
        rep = categorisation_report(
            [p.category for p in test], [r[0] for r in ranked], ranked, train_counts, ks=(1, 5, 10)
        )
        rows[name] = {
            "leaf": rep["leaf"],
            "head": rep.get("leaf_head"),
            "tail": rep.get("leaf_tail"),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{name}: done in {rows[name]['seconds']:.0f} s", flush=True)

    print(f"\n{args.dataset}, {len(test)} test products, the head before training ({args.encoder})")
    print("| label text | leaf acc | leaf wF1 | leaf mF1 | tail mF1 | top-5 | top-10 |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        leaf, tail = r["leaf"], r["tail"] or {"f1_macro": float("nan")}
        print(
            f"| {name} | {leaf['accuracy']:.4f} | {leaf['f1_weighted']:.4f} | "
            f"{leaf['f1_macro']:.4f} | {tail['f1_macro']:.4f} | {leaf['top5_recall']:.4f} | "
            f"{leaf['top10_recall']:.4f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rows": rows,
                "meta": {
                    "dataset": args.dataset,
                    "n_test": len(test),
                    "summaries": str(args.summaries) if args.summaries else None,
                    "date": str(date.today()),
                    "machine": platform.machine(),
                    "command": " ".join(sys.argv),
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
