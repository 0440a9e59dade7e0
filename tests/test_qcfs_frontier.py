"""benchmarks/qcfs_frontier.py on the result JSONs kept in the hippocampus docs: the tables the docs quote."""

from __future__ import annotations

import json

from tests.conftest import REPO, load_benchmark

RESULTS = REPO / "bundles" / "hippocampus_snn" / "docs" / "results"


def _frontier():
    return load_benchmark("qcfs_frontier")


def test_tables_from_the_kept_results(tmp_path):
    r = RESULTS / "short_t"
    out = tmp_path / "t.txt"
    text = _frontier().main(["--runs", str(r / "qcfs_w0"), str(r / "act_w0.3"), "--five_fold", str(r / "act_w0.3"),
                             "--reference", str(RESULTS / "summary.csv"),
                             "--evaluation", str(r / "shipped_fold0_metrics.json"), "--save", str(out)])  # fmt: skip
    assert out.read_text().strip() == text.strip()
    shipped = json.loads((r / "shipped_fold0_metrics.json").read_text())["finetuned_t2"]
    row = f"| finetuned_t2 | 2 | {shipped['dice_3d_mean']:.3f} | {shipped['energy_ratio']:.3f} |"
    assert row in text and shipped["energy_ratio"] < 0.1  # the shipped T = 2 model: >= 10x below the ANN
    assert "| 0.3 | converted | 2 |" in text and "| 0 | converted | 2 |" in text  # both weights, by folder name
    assert "mean (5 folds)" in text and "float pipeline, ann (5 folds) | 0.874" in text
