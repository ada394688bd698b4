"""`angiosynth train segmenter` and `angiosynth segment` end to end on the curated phantom
archive with pairs and on folders of images; their one-line errors and help."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.data.images import write_png

runner = CliRunner()
MICRO = {
    "segmenter": {
        "model": {"channels": [4, 8], "groups": 2},
        "data": {"crop_size": 32},
        "train": {"max_steps": 4, "batch_size": 4, "lr": 1e-2, "log_every": 2},
    }
}


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _png(path, image: np.ndarray, bits: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, image, bits)


def _one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.fixture(scope="module")
def trained(pairs_dataset, tmp_path_factory):
    """A micro segmenter trained through the CLI on the training patient, scored on the test
    patient."""
    base = tmp_path_factory.mktemp("segment-cli")
    config = base / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO))
    run = base / "run"
    result = _invoke("train", "segmenter", pairs_dataset.root, "--config", config,
                     "--out", run, "--held-out", "test")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "segmenter:" in result.output and "phantom masks" in result.output
    assert "held out: Dice" in result.output
    return run, config


def test_training_writes_the_run_with_held_out_scores(trained, pairs_dataset):
    run, _ = trained
    assert (run / "segmenter" / "model.safetensors").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    held = metrics["held_out"]
    arterial = pd.read_parquet(pairs_dataset.root / "arterial.parquet")
    assert held["frames"] == (arterial["split"] == "test").sum() == len(held["per_frame"])
    assert held["targets"] == "phantom" and 0 <= held["dice"] <= 1 and 0 <= held["cl_dice"] <= 1
    assert metrics["steps"] == 4 and metrics["targets"] == "phantom"
    with Image.open(run / "held_out.png") as image:
        assert image.size[0] > 400
    again = _invoke("train", "segmenter", pairs_dataset.root, "--config", trained[1],
                    "--out", run, "--held-out", "none")  # fmt: skip
    _one_line_error(again, "--resume or --overwrite")


def test_a_dataset_is_segmented_into_probabilities_and_masks(trained, pairs_dataset, tmp_path):
    run, _ = trained
    out = tmp_path / "out"
    result = _invoke("segment", run, pairs_dataset.root, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "segment.json").read_text())
    arterial = pd.read_parquet(pairs_dataset.root / "arterial.parquet")
    test_ids = arterial.loc[arterial["split"] == "test", "frame_id"]
    assert {r["frame_id"] for r in summary["images"]} == set(test_ids)
    assert summary["split"] == "test" and summary["threshold"] == 0.5
    first = summary["images"][0]["output"]
    with Image.open(out / "probabilities" / first) as image:
        assert image.size == (64, 64) and image.mode.startswith("I")
        probability = np.asarray(image, dtype=np.float64) / 65535
    with Image.open(out / "masks" / first) as image:
        assert image.mode == "L"
        mask = np.asarray(image)
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, probability > 0.5)
    again = _invoke("segment", run, pairs_dataset.root, "--out", out)
    _one_line_error(again, str(out), "--overwrite")


def test_a_folder_of_images_of_any_size_is_segmented(trained, tmp_path):
    run, _ = trained
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    _png(images / "a.png", rng.uniform(0, 1, (40, 52)), 8)
    _png(images / "sub" / "b.png", rng.uniform(0, 1, (33, 31)), 16)
    out = tmp_path / "out"
    result = _invoke("segment", run / "segmenter", images, "--out", out, "--threshold", "0.3")
    assert result.exit_code == 0, result.output
    for name, size in (("a.png", (52, 40)), ("sub/b.png", (31, 33))):
        for sub in ("probabilities", "masks"):
            with Image.open(out / sub / name) as image:
                assert image.size == size
    summary = json.loads((out / "segment.json").read_text())
    assert [r["input"] for r in summary["images"]] == ["a.png", "sub/b.png"]
    assert summary["dataset"] is None and summary["threshold"] == 0.3


def test_folders_train_and_score_through_the_cli(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("held", 2)):
        for k in range(n):
            image = rng.uniform(0.5, 0.7, (32, 32))
            mask = np.zeros((32, 32))
            mask[:, 10 + k : 12 + k] = 1
            _png(tmp_path / split / "images" / f"{k}.png", np.where(mask > 0, 0.2, image))
            _png(tmp_path / split / "masks" / f"{k}.png", mask)
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO))
    run = tmp_path / "run"
    result = _invoke("train", "segmenter", "--images", tmp_path / "train" / "images",
                     "--masks", tmp_path / "train" / "masks", "--config", config, "--out", run,
                     "--held-out-images", tmp_path / "held" / "images",
                     "--held-out-masks", tmp_path / "held" / "masks")  # fmt: skip
    assert result.exit_code == 0, result.output
    held = json.loads((run / "metrics.json").read_text())["held_out"]
    assert held["frames"] == 2 and held["targets"] == "files"
    assert [r["name"] for r in held["per_frame"]] == ["0.png", "1.png"]


def test_input_errors_are_one_line(trained, pairs_dataset, tmp_path):
    run, config = trained
    _one_line_error(_invoke("segment", tmp_path, pairs_dataset.root, "--out", tmp_path / "o"),
                    str(tmp_path), "no trained segmenter")  # fmt: skip
    broken = tmp_path / "broken"
    (broken / "segmenter").mkdir(parents=True)
    (broken / "segmenter" / "config.json").write_text("{}")
    (broken / "segmenter" / "model.safetensors").write_bytes(b"")
    _one_line_error(_invoke("segment", broken, pairs_dataset.root, "--out", tmp_path / "o"),
                    str(broken / "segmenter"), "unusable segmenter")  # fmt: skip
    _one_line_error(_invoke("segment", run, tmp_path / "nowhere", "--out", tmp_path / "o"),
                    "nowhere", "not found")  # fmt: skip
    _one_line_error(_invoke("segment", run, pairs_dataset.root, "--out", tmp_path / "o",
                            "--threshold", "1.5"), "--threshold")  # fmt: skip
    train = ("train", "segmenter", "--config", config, "--out", tmp_path / "run")
    _one_line_error(_invoke(*train, tmp_path), str(tmp_path), "not a curated dataset")
    _one_line_error(_invoke(*train, "--images", tmp_path, "--masks", tmp_path / "no-masks"),
                    "no images")  # fmt: skip
    images = tmp_path / "images"
    _png(images / "a.png", np.zeros((32, 32)))
    _one_line_error(_invoke(*train, "--images", images, "--masks", tmp_path / "no-masks"),
                    "no-masks", "not found")  # fmt: skip
    _one_line_error(_invoke(*train, "--images", images), "--images DIR and --masks DIR")
    _one_line_error(_invoke(*train, pairs_dataset.root), "'val'")  # no validation patient
    _one_line_error(_invoke(*train, pairs_dataset.root, "--held-out", "train"), "training split")


def test_help_describes_both_commands():
    result = _invoke("train", "segmenter", "--help")
    assert result.exit_code == 0
    for part in ("native arterial frames", "phantom", "soft Dice", "--held-out", "clDice"):
        assert part in result.output, part
    result = _invoke("segment", "--help")
    assert result.exit_code == 0 and "probabilities" in result.output
    assert "segment" in _invoke("--help").output
