"""`angiosynth sample`: designs, output folder, DICOM, grid, errors, sharding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.conditions import CONDITIONS, condition_prompt, parse_prompt
from angiosynth.diffusion.sampling import plan_samples
from conftest import DiffusionData

runner = CliRunner()
COLUMNS = {"file", "file16", "prompt", "condition", "seed", "sampler", "steps", "guidance",
           "model_hash", "batch", "index"}  # fmt: skip


def test_reader_study_design_is_10_batches_of_40():
    plan = plan_samples(seed=5, design="reader-study")
    table = pd.DataFrame([vars(r) for r in plan])

    assert len(table) == 400 and table["index"].tolist() == list(range(400))
    assert (table.groupby(["batch", "condition"]).size() == 10).all()
    assert table["batch"].nunique() == 10 and set(table["condition"]) == set(CONDITIONS)
    assert table["seed"].tolist() == [5 + i for i in range(400)]
    assert table.loc[:39, "condition"].tolist() != sorted(table.loc[:39, "condition"])  # shuffled
    assert plan == plan_samples(seed=5, design="reader-study")


def test_plans_of_a_condition_a_prompt_and_all_conditions():
    assert [r.prompt for r in plan_samples(seed=0, n=2, condition="PC A")] == [
        condition_prompt("PC A")
    ] * 2
    prompt = condition_prompt("AC B").replace("-90°", "-80°")
    (request,) = plan_samples(seed=0, prompt=prompt)
    assert request.condition == "Others" and parse_prompt(prompt).primary_angle == -80
    design = plan_samples(seed=0, n=3, design="conditions")
    assert [r.condition for r in design] == [c for c in CONDITIONS for _ in range(3)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"condition": "AC A", "design": "conditions"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"design": "reader-study", "n": 3}, "leave out --n"),
        ({"design": "grid"}, "unknown design"),
        ({"condition": "AC C"}, "unknown condition 'AC C'"),
    ],
)
def test_plan_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_samples(seed=0, **kwargs)


@pytest.fixture(scope="module")
def sampled(diffusion_data: DiffusionData, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "out"
    result = runner.invoke(app, [
        "sample", str(diffusion_data.ldm_run), "--design", "conditions", "--n", "2",
        "--sampler", "dpmpp", "--steps", "3", "--guidance", "2", "--seed", "10",
        "--batch-size", "3", "--dicom", "--real", str(diffusion_data.dataset), "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "8 images (dpmpp, 3 steps, guidance 2" in result.output
    return out


def test_sample_writes_pngs_dicom_and_the_table(sampled: Path):
    table = pd.read_parquet(sampled / "samples.parquet")

    assert set(table.columns) == COLUMNS and len(table) == 8
    assert table["seed"].tolist() == list(range(10, 18))
    assert (table[["sampler", "steps", "guidance"]].drop_duplicates().values.tolist()
            == [["dpmpp", 3, 2.0]])  # fmt: skip
    first = table.iloc[0]
    image8 = np.asarray(Image.open(sampled / first["file"]))
    image16 = np.asarray(Image.open(sampled / first["file16"]))
    assert image8.dtype == np.uint8 and image8.shape == (32, 32)
    assert image16.dtype in (np.uint16, np.int32) and image16.max() > 255
    np.testing.assert_allclose(image16 / 65535, image8 / 255, atol=1 / 255)
    dicom = pydicom.dcmread(sampled / "dicom" / (Path(first["file"]).stem + ".dcm"))
    assert dicom.ConversionType == "SYN" and "SYNTHETIC" in dicom.SeriesDescription
    assert float(dicom.PositionerPrimaryAngle) == 0.0
    np.testing.assert_array_equal(dicom.pixel_array, image16)


def test_sample_writes_its_settings_and_a_log(sampled: Path):
    settings = json.loads((sampled / "sample.json").read_text())
    log = [json.loads(line) for line in (sampled / "log.jsonl").read_text().splitlines()]

    assert settings["sampler"] == "dpmpp" and settings["images"] == 8
    assert settings["model_hash"] == pd.read_parquet(sampled / "samples.parquet")["model_hash"][0]
    assert [r["images"] for r in log] == [3, 3, 2] and all(r["seconds"] > 0 for r in log)


def test_sample_draws_the_condition_grid(sampled: Path):
    grid = Image.open(sampled / "grid.png")
    assert grid.size[0] > grid.size[1] > 100
    assert (sampled / "grid.pdf").exists()


def test_same_seed_same_files(diffusion_data: DiffusionData, sampled: Path, tmp_path: Path):
    result = runner.invoke(app, [
        "sample", str(diffusion_data.ldm_run), "--condition", "AC B", "--n", "1",
        "--sampler", "dpmpp", "--steps", "3", "--guidance", "2", "--seed", "14",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    reference = pd.read_parquet(sampled / "samples.parquet").iloc[4]  # AC B, seed 14
    assert reference["condition"] == "AC B"
    (only,) = pd.read_parquet(tmp_path / "samples.parquet")["file16"]
    # same image; batch composition moves float results by ~1e-6, so 16-bit values by <= 1
    a = np.asarray(Image.open(tmp_path / only), dtype=float)
    b = np.asarray(Image.open(sampled / reference["file16"]), dtype=float)
    np.testing.assert_allclose(a, b, atol=1)


def test_unknown_prompt_word_is_a_one_line_error(diffusion_data: DiffusionData, tmp_path: Path):
    out = tmp_path / "o"
    result = runner.invoke(app, ["sample", str(diffusion_data.ldm_run), "--prompt",
                                 "This is a coronary DSA scan", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert "unknown word 'coronary'" in result.output and not out.exists()


def test_missing_run_is_a_one_line_error(tmp_path: Path):
    result = runner.invoke(app, ["sample", str(tmp_path), "--condition", "AC A",
                                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2 and "not a trained model" in result.output


@pytest.mark.slow
def test_two_processes_shard_the_images(diffusion_data: DiffusionData, sampled: Path, tmp_path):
    """Under `accelerate launch` with 2 processes the images are those of one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "angiosynth", "sample", str(diffusion_data.ldm_run), "--design", "conditions",
        "--n", "2", "--sampler", "dpmpp", "--steps", "3", "--guidance", "2", "--seed", "10",
        "--batch-size", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "samples.parquet")
    reference = pd.read_parquet(sampled / "samples.parquet")
    assert table["file16"].tolist() == reference["file16"].tolist()
    for name in table["file16"]:
        a, b = Image.open(tmp_path / name), Image.open(sampled / name)
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1)
    assert not list(tmp_path.glob(".samples-*"))
