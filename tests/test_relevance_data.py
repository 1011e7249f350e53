from __future__ import annotations

import pytest
from relevance_fixtures import write_pairs

from dualexpert.data import RecordError
from dualexpert.evaluation.metrics import (
    binary_report,
    bootstrap_ci,
    mean_ci,
    paired_bootstrap_diff,
)
from dualexpert.relevance import load_pairs, sample_pairs, split_by_query
from dualexpert.relevance.schedule import WarmupSchedule


def test_load_pairs_labels_by_threshold(tmp_path):
    p, _ = write_pairs(tmp_path)
    pairs = load_pairs(p)
    assert len(pairs) == 24
    assert {x.label for x in pairs if x.id.startswith("r")} == {1}
    assert {x.label for x in pairs if x.id.startswith("n")} == {0}
    # the threshold is a parameter
    assert all(x.label == 0 for x in load_pairs(p, threshold=3.5))


def test_bad_pair_names_line_and_field(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("id,search_term,product_title,relevance\n1,drill,DeWalt drill,3\n2,,Hose,2\n")
    with pytest.raises(RecordError) as e:
        load_pairs(f)
    assert e.value.line == 3 and e.value.field == "search_term"
    f.write_text("id,search_term,product_title,relevance\n1,drill,DeWalt drill,high\n")
    with pytest.raises(RecordError, match="relevance"):
        load_pairs(f)
    assert load_pairs(f, on_error="skip") == []


def test_split_by_query_keeps_queries_apart(shared_data):
    pairs = load_pairs(shared_data / "home-depot" / "pairs.csv", limit=5000)
    train, test = split_by_query(pairs, 0.2, seed=0)
    assert len(train) + len(test) == len(pairs)
    assert not {p.query.lower() for p in train} & {p.query.lower() for p in test}
    assert 0.1 < len(test) / len(pairs) < 0.3


def test_samples_are_nested_and_seeded(tmp_path):
    pairs = load_pairs(write_pairs(tmp_path)[0])
    big, small = sample_pairs(pairs, 10, seed=3), sample_pairs(pairs, 4, seed=3)
    assert [p.id for p in big[:4]] == [p.id for p in small]
    assert [p.id for p in sample_pairs(pairs, 10, seed=4)] != [p.id for p in big]


def test_warmup_schedule_by_hand():
    s = WarmupSchedule(total_steps=10, frozen_steps=2, encoder_warmup_steps=3, head_warmup_steps=1)
    assert [s.encoder(i) for i in range(2)] == [0.0, 0.0]
    assert s.aux_only(0) and s.aux_only(1) and not s.aux_only(2)
    # encoder: linear warm-up over 3 steps after the frozen phase, times the linear decay
    assert s.encoder(2) == pytest.approx(1 / 4 * 8 / 10)
    assert s.encoder(4) == pytest.approx(3 / 4 * 6 / 10)
    assert s.encoder(5) == pytest.approx(5 / 10)
    assert s.head(0) == pytest.approx(0.5) and s.head(3) == pytest.approx(0.7)


def test_binary_report_and_intervals():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.9, 0.6, 0.65, 0.1, 0.8, 0.3]
    r = binary_report(y, p)
    assert r["roc_auc"] == pytest.approx(8 / 9)
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["precision@0.5"] == pytest.approx(3 / 4) and r["recall@0.5"] == 1.0
    assert r["precision@0.7"] == 1.0 and r["recall@0.7"] == pytest.approx(2 / 3)
    m, h = mean_ci([0.7, 0.8, 0.9])
    assert m == pytest.approx(0.8) and h == pytest.approx(4.302653 * 0.1 / 3**0.5, rel=1e-4)
    auc, half = bootstrap_ci(y, p, n=200)
    assert auc == pytest.approx(8 / 9) and half > 0


def test_paired_bootstrap_difference():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.9, 0.6, 0.65, 0.1, 0.8, 0.3]
    assert paired_bootstrap_diff(y, p, p, n=100) == (0.0, 0.0, 0.0)  # same system: exactly 0
    perfect = [0.9, 0.8, 0.2, 0.1, 0.7, 0.3]
    d, lo, hi = paired_bootstrap_diff(y, perfect, p, n=200)
    assert d == pytest.approx(1 - 8 / 9) and 0.0 <= lo <= d <= hi
