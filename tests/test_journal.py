"""The one resumable JSONL journal: compact id index, torn lines, resume, duplicates."""

from __future__ import annotations

import json
import random
import tracemalloc

from dualexpert.journal import IdIndex, Journal, chunks, drop_torn_tail, read_records


def test_id_index_is_a_set_across_merges_and_closed_segments():
    rng = random.Random(0)
    ids = [f"sku-{i}-{rng.getrandbits(40)}" for i in range(200_000)]
    index = IdIndex(segment=50_000)
    new = [index.add_new(ids[i : i + 4096]) for i in range(0, len(ids), 4096)]
    assert all(b.all() for b in new)  # 200K distinct ids, merged into segments
    assert len(index) == 200_000 and len(index._closed) >= 2  # the rest: open and recent
    assert all(len(s) == 50_000 and (s[1:] > s[:-1]).all() for s in index._closed)
    assert index.contains(ids[::97]).all()
    assert not index.contains([f"other-{n}" for n in range(2000)]).any()
    assert index.add(ids[5]) is False and len(index) == 200_000
    assert index.add(ids[-1]) is False and index.add(ids[60_000]) is False
    assert index.add_new(["a", "b", "a", ids[0]]).tolist() == [True, True, False, False]


def test_id_index_matches_a_python_set_with_repeats():
    rng = random.Random(1)
    pool = [f"p{n}" for n in range(30_000)]
    index, truth = IdIndex(segment=5_000), set()
    for _ in range(40):
        block = rng.choices(pool, k=2_000)
        expected = []
        for x in block:
            expected.append(x not in truth)
            truth.add(x)
        assert index.add_new(block).tolist() == expected
    assert len(index) == len(truth)
    probe = rng.sample(pool, 3_000)
    assert index.contains(probe).tolist() == [x in truth for x in probe]


def test_id_index_merges_allocate_at_most_a_segment():
    """A long run's peak memory: no merge copies the whole index (the old single array,
    re-merged, peaked at several times the index's size)."""
    segment = 1 << 15  # 256 KB of hashes
    index = IdIndex(segment=segment)
    ids = [str(n) for n in range(600_000)]  # 18 segments
    worst = 0
    tracemalloc.start()
    try:
        for i in range(0, len(ids), 4096):
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            index.add_new(ids[i : i + 4096])
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()
    assert len(index) == 600_000 and len(index._closed) >= 15
    assert worst < 3 * segment * 8 + 1_500_000, worst  # one segment twice, plus the block


def test_journal_resumes_after_a_torn_line_and_drops_repeats(tmp_path):
    out = tmp_path / "out.jsonl"
    items = [{"id": str(i % 7)} for i in range(10)]  # ids 0..6, then 0, 1, 2 again
    j = Journal(out)
    with j.open() as write:
        first = [x for x in j.new(items, key=lambda x: x["id"])]
        assert [x["id"] for x in first] == [str(i) for i in range(7)]
        assert j.duplicate_ids == 3
        write([{"id": x["id"], "n": 1} for x in first[:4]])
    with out.open("a") as f:  # a kill -9 halfway through the next record
        f.write('{"id": "4", "n"')
    assert [r["id"] for r in read_records(out)] == ["0", "1", "2", "3"]

    again = Journal(out)
    todo = list(again.new(items, key=lambda x: x["id"]))
    assert [x["id"] for x in todo] == ["4", "5", "6"]
    assert again.already_done == 4 and again.duplicate_ids == 3
    with again.open() as write:  # the torn line is cut before appending
        assert write([{"id": x["id"], "n": 2} for x in todo]) == 3
    lines = out.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [str(i) for i in range(7)]


def test_a_whole_last_record_without_newline_is_kept(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"}\n{"id": "b"}')
    drop_torn_tail(out)
    assert out.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_chunks_are_lazy():
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    it = chunks(endless(), 3)
    assert next(it) == [0, 1, 2] and next(it) == [3, 4, 5]


def test_ramped_chunks_start_small_and_keep_every_item():
    from dualexpert.journal import ramped_chunks

    sizes = [len(c) for c in ramped_chunks(range(300), 64)]
    assert sizes == [8, 16, 32, 64, 64, 64, 52]
    assert [x for c in ramped_chunks(iter(range(300)), 64) for x in c] == list(range(300))
    assert [len(c) for c in ramped_chunks(range(10), 3)] == [3, 3, 3, 1]
    assert list(ramped_chunks([], 64)) == []


def test_a_file_of_other_data_is_refused_before_it_is_touched(tmp_path):
    """A catalogue given as the output (here without a final newline, which the torn-line
    repair would have cut), or another command's records, is an error naming the line; the
    file is left as it was."""
    import pytest

    csv = tmp_path / "catalogue.csv"
    csv.write_text("id,title\n1,mouse")
    with pytest.raises(ValueError, match=r"catalogue.csv:1: not a JSON record"):
        with Journal(csv).open() as write:
            write([{"id": "x"}])
    assert csv.read_text() == "id,title\n1,mouse"
    other = tmp_path / "predict.jsonl"
    other.write_text('{"id": "a", "candidates": []}\n\n{"id": "b", "candidates": []}\n')
    assert len(Journal(other, fields=("candidates",)).done()) == 2  # blank lines are fine
    with pytest.raises(ValueError, match=r"predict.jsonl:1: a record without 'routed'"):
        Journal(other, fields=("routed",)).done()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        Journal(tmp_path).done()
