"""The experiments runner (validation/experiments, issue 15) in its tiny mode: one width, one seed,
a couple of epochs, a subset of the methods; it writes its tables, CSVs and plots."""

import csv
import os

import pytest

pytest.importorskip("torchdiffeq")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from validation.experiments.common import default_alias  # noqa: E402
from validation.experiments.run import main  # noqa: E402


def test_runner_tiny_writes_tables_and_plots(tmp_path):
    methods = f"torchdiffeq direct;gqlib gq adaptive;gqlib default ({default_alias()})"
    assert main(["--tiny", "--only", "g1d,toy_gradient", "--methods", methods, "--epochs", "2",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    for name in ("g1d.md", "g1d_runs.csv", "g1d_epochs.csv", "g1d_time_vs_width.png",
                 "g1d_metric_vs_width.png", "g1d_loss_vs_epoch.png", "g1d_loss_vs_time.png",
                 "toy_gradient.md", "toy_gradient.csv", "toy_gradient.png", "summary.md",
                 "meta.json"):
        assert os.path.getsize(tmp_path / name) > 0, name
    with open(tmp_path / "g1d_runs.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == methods.split(";")
    assert all(int(r["epochs"]) == 2 and float(r["fwd_nfe"]) > 0 for r in rows)
    with open(tmp_path / "toy_gradient.csv") as fh:
        toy = list(csv.DictReader(fh))
    assert all(float(r["rel_err_a"]) < 1e-3 for r in toy)  # rtol 1e-6 on an exact problem


def test_g1d_iteration_table(tmp_path):
    from validation.experiments.g1d import main as g1d_main

    out = tmp_path / "g1d_iteration.md"
    assert g1d_main(["--widths", "5", "--repeats", "1", "--out", str(out), "--methods",
                     f"torchdiffeq direct;gqlib default ({default_alias()})"]) == 0
    text = out.read_text()
    assert "| torchdiffeq direct |" in text and f"gqlib default ({default_alias()})" in text


def test_runner_resume_trains_only_the_missing_runs(tmp_path):
    """``--resume`` keeps the runs already in the CSVs (their numbers unchanged) and trains only the
    (width, seed, method) triples that are missing."""
    first, second = "torchdiffeq direct", f"gqlib default ({default_alias()})"
    common = ["--tiny", "--only", "g1d", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]
    assert main(common + ["--methods", first]) == 0
    with open(tmp_path / "g1d_runs.csv") as fh:
        before = list(csv.DictReader(fh))
    assert main(common + ["--methods", f"{first};{second}", "--resume"]) == 0
    with open(tmp_path / "g1d_runs.csv") as fh:
        after = list(csv.DictReader(fh))
    assert [r["method"] for r in after] == [first, second]
    assert after[0] == before[0]  # kept, not retrained (wall time and loads identical)
    with open(tmp_path / "g1d_epochs.csv") as fh:
        epochs = list(csv.DictReader(fh))
    assert sorted({e["method"] for e in epochs}) == sorted([first, second])
    assert len(epochs) == 4


def test_runner_resume_keeps_other_widths_in_the_tables(tmp_path):
    """A --resume run at another width adds its runs; the folder's tables hold both widths."""
    first = "torchdiffeq direct"
    common = ["--tiny", "--only", "g1d", "--epochs", "2", "--out", str(tmp_path), "--no-progress",
              "--methods", first]
    assert main(common) == 0
    assert main(common + ["--widths", "6", "--resume"]) == 0
    with open(tmp_path / "g1d_runs.csv") as fh:
        assert sorted(int(r["width"]) for r in csv.DictReader(fh)) == [5, 6]
    text = (tmp_path / "g1d.md").read_text()
    assert "g1d, width 5" in text and "g1d, width 6" in text
