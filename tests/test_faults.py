"""Nothing lost, nothing silent: broken files, real catalogues' shapes, interrupted training.

Each file is made in the test; the CLI runs in-process, as a user would call it.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from dualexpert.cli import app
from dualexpert.data import ColumnMap, RecordError, iter_catalogue, load_catalogue

runner = CliRunner()
NO_LLM = ["--no-synthesize"]  # the toy leaves are rare: train would ask the bundled LLM


def _one_line_error(res, *fragments: str) -> None:
    text = " ".join(res.output.split())  # the console wraps long lines where it likes
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "error:" in text
    for f in fragments:
        assert f in text, (f, res.output)


# ---- broken catalogues --------------------------------------------------------------------------
def test_an_unbalanced_quote_is_an_error_not_a_swallowed_row(tmp_path):
    f = tmp_path / "quote.csv"
    f.write_text(
        'id,title,category\n1,"Mouse,Electronics > Mice\n2,Keyboard,Electronics > Keys\n'
        "3,Cable,Electronics > Cables\n4,Lamp,Home > Lamps\n"
    )
    with pytest.raises(RecordError, match=r"quote.csv:2: .*unbalanced quote"):
        load_catalogue(f)
    cat = load_catalogue(f, on_error="skip")
    assert cat.skipped >= 1
    assert all("Electronics > Keys" not in p.title for p in cat.products)


def test_a_row_with_the_wrong_field_count_is_counted(tmp_path):
    f = tmp_path / "ragged.csv"
    f.write_text("id,title,category\n1,Mouse,A > B\n2,Lamp,Home,Lamps\n3,Cable,A > C\n")
    with pytest.raises(RecordError, match=r"ragged.csv:3: .*4 fields where the header has 3"):
        load_catalogue(f)
    cat = load_catalogue(f, on_error="skip")
    assert [p.id for p in cat.products] == ["1", "3"] and cat.skipped == 1


def test_values_of_the_wrong_type_are_errors(tmp_path):
    f = tmp_path / "types.jsonl"
    rows = [
        {"id": 7, "title": "Mouse", "category": "A > B"},  # a numeric id is fine
        {"id": "8", "title": ["Mouse", "pad"], "category": "A > B"},
        {"id": "9", "title": 12.5, "category": "A > B"},
        {"id": "10", "title": "Lamp", "description": None, "category": "A > C"},  # null: empty
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cat = load_catalogue(f, on_error="skip")
    assert [p.id for p in cat.products] == ["7", "10"] and cat.skipped == 2
    assert "types.jsonl:2: field 'title': expected text, got list" in str(cat.errors[0])


def test_a_misspelt_column_map_key_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="titel"):
        ColumnMap(titel="name")
    f = tmp_path / "c.csv"
    f.write_text("name,cat\nMouse,A > B\n")
    res = runner.invoke(
        app, ["train", str(f), "--out", str(tmp_path / "m"), "--columns", '{"titel": "name"}']
    )
    _one_line_error(res, "titel")


def test_broken_files_are_one_line_that_names_them(tmp_path):
    pq = tmp_path / "cut.parquet"
    import pyarrow as pa
    import pyarrow.parquet as papq

    papq.write_table(pa.table({"title": ["a"] * 500, "category": ["A > B"] * 500}), pq)
    pq.write_bytes(pq.read_bytes()[:300])  # truncated
    res = runner.invoke(app, ["train", str(pq), "--out", str(tmp_path / "m")])
    _one_line_error(res, "cut.parquet", "Parquet")
    with pytest.raises(ValueError, match="cut.parquet"):
        list(iter_catalogue(pq))

    res = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m")])
    _one_line_error(res, "is not a file")

    empty = tmp_path / "empty.csv"
    empty.write_text("title,category\n")
    res = runner.invoke(app, ["train", str(empty), "--out", str(tmp_path / "m")])
    _one_line_error(res, "empty.csv", "no labelled products")

    res = runner.invoke(app, ["predict", str(tmp_path), str(empty), "--out", str(tmp_path / "o")])
    _one_line_error(res, "dualexpert.json")


def test_train_skip_bad_covers_unlabelled_rows_and_fails_when_nothing_is_left(tmp_path):
    f = tmp_path / "unlabelled.csv"
    f.write_text("title,category\nMouse,\nLamp,\n")
    res = runner.invoke(app, ["train", str(f), "--out", str(tmp_path / "m")])
    _one_line_error(res, "has no category", "--skip-bad")
    res = runner.invoke(app, ["train", str(f), "--out", str(tmp_path / "m"), "--skip-bad"])
    _one_line_error(res, "no labelled products")


def test_verbose_shows_the_traceback(tmp_path):
    res = runner.invoke(app, ["--verbose", "train", str(tmp_path), "--out", str(tmp_path / "m")])
    assert res.exit_code != 0 and res.exception is not None
    assert isinstance(res.exception, OSError)


# ---- training: internal nodes, resume safety ----------------------------------------------------
def _toys(n_per: int = 6) -> list[dict]:
    """Paths of mixed depth, some products filed at internal nodes (as in real catalogues)."""
    paths = {
        "Hobbies > Trains > Accessories > Landscaping": "model railway grass mat scenery",
        "Hobbies > Trains > Accessories": "model railway signal light accessory",
        "Hobbies > Trains > Locomotives": "steam locomotive engine model",
        "Toys > Dolls": "fashion doll with dress",
        "Toys": "assorted toy bundle gift",
    }
    rows = []
    for path, words in paths.items():
        for i in range(n_per):
            rows.append(
                {
                    "id": f"{len(rows)}",
                    "title": f"{words} {i}",
                    "category": tuple(path.split(" > ")),
                }
            )
    return rows


@pytest.mark.slow
def test_products_at_internal_nodes_are_classes_and_resume_is_guarded(tmp_path):
    from dualexpert.domain import DomainExpert
    from dualexpert.evaluation import categorisation_report

    rows = _toys()
    kw = dict(epochs=1.0, batch_size=8, max_length=12, save_steps=2, label_augmentation=False)
    ck = tmp_path / "ck"
    a = DomainExpert(**kw, seed=1).fit(rows, output_dir=ck, progress=False)
    internal = {"Hobbies > Trains > Accessories", "Toys"}
    assert internal <= set(a.classes_)  # held products, so they are classes
    paths = [r["category"] for r in rows]
    pred = [c[0].path for c in a.predict_topk(rows, k=1)]
    rep = categorisation_report(paths, pred)
    assert set(rep) >= {"lvl1", "lvl2", "lvl3", "lvl4", "leaf"}  # mixed depth 1..4

    with pytest.raises(ValueError, match="not a leaf"):
        DomainExpert(**kw, internal_nodes="reject").fit(rows, progress=False)

    # another run's checkpoints (other data) are refused, not resumed
    other = [dict(r, title=r["title"] + " x") for r in rows]
    with pytest.raises(ValueError, match="another training run"):
        DomainExpert(**kw, seed=1).fit(other, output_dir=ck, progress=False)
    # an incomplete newest checkpoint (killed while it was written) is skipped
    cks = sorted(ck.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    broken = ck / f"checkpoint-{int(cks[-1].name.split('-')[1]) + 1}"
    shutil.copytree(cks[-1], broken)
    (broken / "trainer_state.json").write_text('{"global_step": ')
    b = DomainExpert(**kw, seed=1).fit(rows, output_dir=ck, progress=False)
    assert b.train_log[-1]["step"] == a.train_log[-1]["step"]  # resumed from the whole one


@pytest.mark.slow
def test_train_cli_keeps_checkpoints_out_of_the_model_folder(tmp_path):
    f = tmp_path / "toys.jsonl"
    rows = [dict(r, category=" > ".join(r["category"])) for r in _toys()]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    res = runner.invoke(app, ["train", str(f), "--out", str(out), "--epochs", "0.5"] + NO_LLM)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model.checkpoints" / "run.json").is_file()
    assert not any(p.name.startswith("checkpoint") for p in out.rglob("*"))


def test_a_full_disk_while_training_is_one_line_that_says_how_to_resume(tmp_path, monkeypatch):
    """safetensors and torch.save fail on a full disk with their own error types; the user sees
    one line naming the folder, the cause and the fix, not a traceback."""
    import transformers
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", full)
    f = tmp_path / "toys.jsonl"
    rows = [dict(r, category=" > ".join(r["category"])) for r in _toys()]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "model"
    res = runner.invoke(app, ["train", str(f), "--out", str(out), "--epochs", "0.5"] + NO_LLM)
    _one_line_error(res, "no space left", "model.checkpoints", "--resume")
    assert not (out / "dualexpert.json").exists()


def test_disk_full_as_oserror_leaves_other_errors_alone(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from dualexpert.training import disk_full_as_oserror

    with pytest.raises(RuntimeError, match="something else"):
        with disk_full_as_oserror(tmp_path):
            raise RuntimeError("something else")
    with pytest.raises(PermissionError):  # an OSError that is not a full disk stays itself
        with disk_full_as_oserror(tmp_path):
            raise PermissionError(errno.EACCES, "denied")
    # torch.save's message names no cause: the free space where the checkpoints go does
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9, 0))
    with pytest.raises(ValueError, match="a bug"):  # not a write: a full disk did not cause it
        with disk_full_as_oserror(tmp_path):
            raise ValueError("a bug")
    with pytest.raises(OSError, match="no space left") as e:
        with disk_full_as_oserror(tmp_path):
            raise RuntimeError("[enforce fail at inline_container.cc] file write failed")
    assert e.value.errno == errno.ENOSPC


@pytest.mark.slow
def test_train_killed_mid_run_resumes_from_its_checkpoint(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    f = tmp_path / "toys.jsonl"
    rows = [dict(r, category=" > ".join(r["category"])) for r in _toys()]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, ck = tmp_path / "model", tmp_path / "model.checkpoints"
    cmd = [sys.executable, "-m", "dualexpert.cli", "-v", "train", str(f), "--out", str(out)]
    cmd += ["--epochs", "5", "--batch-size", "8", "--max-length", "16", *NO_LLM]  # ckpt each
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(ck.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "dualexpert.json").exists()  # killed before the model was saved
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming from" in res.stderr and "checkpoint-" in res.stderr
    from dualexpert.domain import DomainExpert

    back = DomainExpert.load(out)
    assert len(back.predict_topk([r["title"] for r in rows[:3]], k=2)) == 3


def test_the_ray_engine_without_ray_names_the_extra(monkeypatch, tmp_path):
    import sys

    from dualexpert.scale import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"dualexpert\[ray\]"):
        require_ray()
    f = tmp_path / "c.csv"
    f.write_text("title\nMouse\n")
    res = runner.invoke(
        app, ["classify", str(tmp_path), str(f), "--out", str(tmp_path / "o"), "--engine", "ray"]
    )
    assert res.exit_code != 0 and "dualexpert[ray]" in " ".join(res.output.split())
