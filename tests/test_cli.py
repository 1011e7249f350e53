"""The CLI end to end on the shipped demo catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dualexpert.cli import app

runner = CliRunner()


def test_bad_record_error_names_line_and_field(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("id,title,category\n1,Mouse,Electronics > Mice\n2,,Electronics > Mice\n")
    res = runner.invoke(app, ["train", str(f), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "bad.csv:3: field 'title'" in res.output.replace("\n", "")


def test_settings_and_paths_a_user_can_fix_are_refused_before_any_work(tmp_path):
    """Each of these ran for minutes (an LLM writing synthetic products, an evaluation, a
    training) or did the wrong thing silently before it was refused."""
    f = tmp_path / "lab.csv"
    f.write_text("id,title,category\n1,Mouse,Electronics > Mice\n2,Kettle,Home > Kettles\n")
    model, out = tmp_path / "nope", str(tmp_path / "o.jsonl")
    one = tmp_path / "one.csv"
    one.write_text("title,category\nMouse,Electronics > Mice\nTrackball,Electronics > Mice\n")
    for args, message in [
        (["train", str(one), "--out", str(tmp_path / "m"), "--no-synthesize"], "2 categories"),
        (["train", str(f), "--out", str(tmp_path / "m"), "--epochs", "0"], "epochs"),
        (["train", str(f), "--out", str(f)], "is a file; it must be a folder"),
        (["predict", str(model), str(f), "-o", out, "--k", "0"], "--k"),
        (["predict", str(model), str(f), "-o", out, "--batch-size", "0"], "--batch-size"),
        (["classify", str(model), str(f), "-o", out, "--threshold", "90"], "--threshold"),
        (["classify", str(model), str(f), "-o", out, "--limit", "-1"], "--limit"),
        (["predict", str(model), str(f), "-o", out, "--prior-adjustment", "1e308"], "--prior"),
        (["evaluate", str(model), str(f), "--json", str(f)], "is an input of this command"),
        (["evaluate", str(model), str(f), "--json", str(tmp_path)], "is a folder"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)
    assert f.read_text().startswith("id,title,category")


@pytest.mark.slow
def test_train_predict_evaluate(tmp_path, demo_catalogue):
    model = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "train",
            str(demo_catalogue),
            "--out",
            str(model),
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--learning-rate",
            "2e-4",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (model / "model.safetensors").exists() and (model / "taxonomy.json").exists()

    out = tmp_path / "topk.jsonl"
    res = runner.invoke(
        app,
        [
            "predict",
            str(model),
            str(demo_catalogue),
            "--out",
            str(out),
            "--k",
            "3",
            "--batch-size",
            "64",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 240 and all(len(r["candidates"]) == 3 for r in recs)
    gold = {r["id"]: r["category"] for r in recs}
    assert len({r["id"] for r in recs}) == 240
    # a second run on the same output resumes: nothing is duplicated
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:100]) + "\n" + lines[100][:25])  # a killed run's torn line
    res = runner.invoke(
        app, ["predict", str(model), str(demo_catalogue), "--out", str(out), "--k", "3"]
    )
    assert res.exit_code == 0 and "140 new" in res.output.replace("\n", " ")
    again = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(again) == 240 and {r["id"]: r["category"] for r in again} == gold

    # --prior-adjustment: tau at prediction time instead of the saved one (0 here); the demo
    # catalogue is balanced, so a copy of the model gets a skewed prior for tau to act on
    import shutil

    from dualexpert.data import load_catalogue
    from dualexpert.domain import DomainExpert

    skewed = tmp_path / "skewed"
    shutil.copytree(model, skewed)
    manifest = json.loads((skewed / "dualexpert.json").read_text())
    assert manifest["prior_adjustment"] == 0.0
    # skewed far enough to move answers that the neighbour index makes sharp (a demo product
    # is its own nearest neighbour)
    manifest["class_counts"] = [10 ** (25 * (i % 4)) for i in range(len(manifest["classes"]))]
    (skewed / "dualexpert.json").write_text(json.dumps(manifest))
    prods = load_catalogue(demo_catalogue).products
    first = {}
    for tau in ("0", "1"):
        out1 = tmp_path / f"topk-tau{tau}.jsonl"
        args = ["predict", str(skewed), str(demo_catalogue), "--out", str(out1), "--k", "3"]
        res = runner.invoke(app, [*args, "--prior-adjustment", tau])
        assert res.exit_code == 0, res.output
        recs = {r["id"]: r["candidates"] for r in map(json.loads, out1.open())}
        first[tau] = [recs[p.id][0]["id"] for p in prods]
        got = [[c["probability"] for c in recs[p.id]] for p in prods]
        proba = DomainExpert.load(skewed, prior_adjustment=float(tau)).predict_proba(prods)
        assert np.allclose(got, -np.sort(-proba, axis=1)[:, :3], atol=1e-5)
    assert sum(a != b for a, b in zip(first["0"], first["1"], strict=True)) > 3  # tau acted
    res = runner.invoke(app, [*args, "--prior-adjustment", "-1"])
    assert res.exit_code == 2 and "prior-adjustment" in res.output

    rep = tmp_path / "report.json"
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(model),
            str(demo_catalogue),
            "--k",
            "5",
            "--train-file",
            str(demo_catalogue),
            "--json",
            str(rep),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(rep.read_text())
    assert report["lvl3"]["accuracy"] > 0.8  # training data: should be nearly all right
    assert report["leaf"]["top5_recall"] >= report["leaf"]["top1_recall"]
    assert {"lvl1", "lvl2", "lvl3", "leaf", "leaf_head"} <= set(report)

    # int8 inference from the CLI: same report, close to the fp32 scores
    rep8 = tmp_path / "report-int8.json"
    args = ["evaluate", str(model), str(demo_catalogue), "--k", "5", "--json", str(rep8)]
    res = runner.invoke(app, [*args, "--quantize"])
    assert res.exit_code == 0, res.output
    int8 = json.loads(rep8.read_text())
    assert abs(int8["lvl3"]["accuracy"] - report["lvl3"]["accuracy"]) <= 0.05
    assert int8["leaf"]["top5_recall"] >= int8["leaf"]["top1_recall"]

    # another inference batch size: fp32 scores do not depend on it
    rep5 = tmp_path / "report-b5.json"
    args = ["evaluate", str(model), str(demo_catalogue), "--k", "5", "--json", str(rep5)]
    res = runner.invoke(app, [*args, "--batch-size", "5"])
    assert res.exit_code == 0, res.output
    b5 = json.loads(rep5.read_text())
    assert b5["speed"]["batch_size"] == 5 and report["speed"]["batch_size"] == 32
    assert abs(b5["lvl3"]["accuracy"] - report["lvl3"]["accuracy"]) <= 0.01

    # --teacher: a student distilled from the model above; the teacher is recorded in the
    # student's manifest, its targets sit in the checkpoints; a missing teacher is a usage error
    student = tmp_path / "student"
    args = ["train", str(demo_catalogue), "--out", str(student), "--epochs", "1",
            "--batch-size", "16", "--no-synthesize", "--teacher-weight", "0.7"]  # fmt: skip
    res = runner.invoke(app, [*args, "--teacher", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "nothing" in res.output
    res = runner.invoke(app, [*args, "--teacher", str(model)])
    assert res.exit_code == 0, res.output
    cfg = json.loads((student / "dualexpert.json").read_text())["config"]
    assert cfg["teacher"] == str(model) and cfg["teacher_weight"] == 0.7
    assert (tmp_path / "student.checkpoints" / "teacher-targets.npz").is_file()
