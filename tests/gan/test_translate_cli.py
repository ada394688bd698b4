"""`angiosynth train translate`, `angiosynth translate` and `evaluate --translated` end to end on
a curated phantom archive with pairs, on folders of images and on DICOM XA files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.dicom.translated import TranslatedImageInfo, write_translated_dicom

runner = CliRunner()
MICRO = {
    "data": {"crop_size": 32},
    "generator": {"ngf": 4, "n_blocks": 1, "n_content": 2},
    "discriminator": {"ndf": 4, "n_layers": 2},
    "cut": {"nce_layers": [0, 4, 7, 10], "num_patches": 16},
    "train": {"max_steps": 4, "log_every": 2, "batch_size": 2},
}


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(pairs_dataset, tmp_path_factory):
    """A micro CycleGAN trained through the CLI on the pairs dataset."""
    base = tmp_path_factory.mktemp("translate-cli")
    config = base / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO))
    run = base / "run"
    result = _invoke("train", "translate", pairs_dataset.root, "--method", "cyclegan",
                     "--config", config, "--out", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cyclegan:" in result.output and (run / "generator" / "model.safetensors").is_file()
    return run, config


@pytest.fixture(scope="module")
def translated(trained, pairs_dataset, tmp_path_factory) -> Path:
    """The pairs dataset's test split (its phantom twins) translated by the micro CycleGAN."""
    run, _ = trained
    out = tmp_path_factory.mktemp("translated") / "cyclegan"
    result = _invoke("translate", run, pairs_dataset.root, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return out


def test_a_dataset_translates_its_phantom_twins_and_evaluates_against_the_truth(
    translated, pairs_dataset, tmp_path
):
    out, evaluation = translated, tmp_path / "eval"
    table = pd.read_csv(out / "translations.csv")
    arterial = pd.read_parquet(pairs_dataset.root / "arterial.parquet")
    assert set(table["frame_id"]) == set(arterial.loc[arterial["split"] == "test", "frame_id"])
    assert set(table["kind"]) == {"phantom-twin"} and set(table["bits"]) == {16}
    with Image.open(out / table["output"][0]) as image:
        assert image.size == (64, 64) and image.mode.startswith("I")
    meta = json.loads((out / "translate.json").read_text())
    assert meta["method"] == "cyclegan" and meta["split"] == "test"
    result = _invoke("evaluate", "--translated", out, "--real", pairs_dataset.root,
                     "--out", evaluation, "--device", "cpu", "--bootstrap", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((evaluation / "metrics.json").read_text())
    fidelity = metrics["vessel_fidelity"]
    assert fidelity["n_pairs"] == len(table)
    # the truth's own vessel map against the phantom's mask: the method's ceiling
    assert fidelity["truth"]["dice"] > 0.5
    assert 0 <= fidelity["translation"]["dice"] <= 1
    assert (evaluation / "report.html").is_file()


@pytest.mark.slow
def test_evaluate_compares_two_translators_of_the_same_frames(
    trained, translated, pairs_dataset, tmp_path
):
    _, config = trained
    run, baseline = tmp_path / "run", tmp_path / "baseline"
    result = _invoke("train", "translate", pairs_dataset.root, "--method", "attentiongan",
                     "--config", config, "--out", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = _invoke("translate", run, pairs_dataset.root, "--out", baseline, "--device", "cpu")
    assert result.exit_code == 0, result.output
    evaluation = tmp_path / "eval"
    result = _invoke("evaluate", "--translated", translated, "--compare", baseline,
                     "--real", pairs_dataset.root, "--out", evaluation, "--device", "cpu",
                     "--bootstrap", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["label"] == "cyclegan" and list(metrics["compared"]) == ["attentiongan"]
    compared = metrics["compared"]["attentiongan"]
    assert compared["translate"]["method"] == "attentiongan"
    assert compared["distribution"]["n_fake"] == metrics["distribution"]["n_fake"]
    assert compared["distribution"]["fid"] != metrics["distribution"]["fid"]
    n_pairs = metrics["vessel_fidelity"]["n_pairs"]
    assert compared["vessel_fidelity"]["n_pairs"] == n_pairs
    assert 0 <= compared["vessel_fidelity"]["translation"]["dice"] <= 1
    assert [r.get("method") for r in metrics["summary"][:2]] == ["cyclegan", "attentiongan"]
    assert "attentiongan" in result.output and "truth (ceiling)" in result.output
    frames = pd.read_parquet(evaluation / "frames.parquet")
    assert len(frames) == n_pairs and frames["attentiongan_dice"].between(0, 1).all()
    assert frames["attentiongan_output"].tolist() == frames["output"].tolist()  # same names
    assert (evaluation / "pairs.png").is_file() and (evaluation / "pairs.pdf").is_file()


def test_evaluate_refuses_to_compare_translations_of_other_frames(
    translated, pairs_dataset, tmp_path
):
    other = tmp_path / "fewer"
    shutil.copytree(translated, other)
    table = pd.read_csv(other / "translations.csv")
    table.iloc[1:].to_csv(other / "translations.csv", index=False)
    result = _invoke("evaluate", "--translated", translated, "--compare", other,
                     "--real", pairs_dataset.root, "--out", tmp_path / "eval")  # fmt: skip
    assert result.exit_code == 2  # the last line, after the bars of reading the folders:
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"error: {other}: not translations of the inputs of {translated}")
    assert message.endswith(f"(translations.csv 'input': 1 of its {len(table)} missing, 0 others); "
                            "compare translations of the same frames")  # fmt: skip
    assert not (tmp_path / "eval").exists()


def test_train_translate_resumes_through_the_cli(pairs_dataset, tmp_path):
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump({**MICRO, "train": {**MICRO["train"], "max_steps": 2,
                                                         "checkpoint_every": 2}}))  # fmt: skip
    args = ["train", "translate", pairs_dataset.root, "--method", "cut", "--config", config,
            "--out", tmp_path / "run"]  # fmt: skip
    assert _invoke(*args).exit_code == 0
    again = _invoke(*args)
    assert again.exit_code == 2 and "--resume or --overwrite" in again.output
    longer = _invoke(*args, "--resume", "--max-steps", "4")
    assert longer.exit_code == 0, longer.output
    assert "4 steps" in longer.output


def test_folders_of_images_keep_size_and_bit_depth(trained, tmp_path):
    run, _ = trained
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)).save(folder / "big.png")
    wide = rng.integers(0, 65535, (40, 70), dtype=np.uint16)
    Image.fromarray(wide).save(folder / "sub" / "wide.png")
    result = _invoke("translate", run, folder, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "translations.csv").set_index("input")
    assert table.loc["big.png", ["height", "width", "bits"]].tolist() == [512, 512, 8]
    assert table.loc["sub/wide.png", ["height", "width", "bits"]].tolist() == [40, 70, 16]
    with Image.open(tmp_path / "out" / table.loc["big.png", "output"]) as image:
        assert image.size == (512, 512) and image.mode == "L"
    again = _invoke("translate", run, folder, "--out", tmp_path / "out")
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_inputs_sharing_a_name_get_distinct_outputs(trained, tmp_path):
    run, _ = trained
    folder = tmp_path / "inputs"
    folder.mkdir()
    frame = np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(frame).save(folder / "a.png")
    Image.fromarray(frame).save(folder / "a.tif")
    Image.fromarray(frame).save(folder / "b.png")
    result = _invoke("translate", run, folder, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out" / "translations.csv")
    assert sorted(table["output"]) == ["images/a-png.png", "images/a-tif.png", "images/b.png"]


def test_dicom_xa_frames_are_translated_and_written_as_synthetic_dicom(
    trained, pairs_archive, tmp_path
):
    run, _ = trained
    source = tmp_path / "xa"
    first = sorted((pairs_archive.root / "dicom").rglob("*.dcm"))[0]
    shutil.copytree(first.parent, source)
    frames = sum(int(pydicom.dcmread(p, stop_before_pixels=True).NumberOfFrames)
                 for p in source.glob("*.dcm"))  # fmt: skip
    out = tmp_path / "out"
    result = _invoke("translate", run, source, "--out", out, "--dicom", "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "translations.csv")
    assert len(table) == frames and set(table["kind"]) == {"dicom"}
    written = pydicom.dcmread(next((out / "dicom").glob("*.dcm")))
    assert written.ConversionType == "SYN" and list(written.ImageType) == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in written.ImageComments and written.PatientName == "SYNTHETIC^ANGIOSYNTH"


def test_input_errors_are_one_line(trained, tmp_path):
    run, _ = trained
    not_xa = tmp_path / "not-xa"
    write_translated_dicom(not_xa / "sc.dcm", np.zeros((8, 8), np.uint8),
                           TranslatedImageInfo("x", "cyclegan", "0" * 16, 0))  # fmt: skip
    result = _invoke("translate", run, not_xa, "--out", tmp_path / "o1")
    assert result.exit_code == 2 and "not an X-ray angiography (XA) file" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    result = _invoke("translate", run, empty, "--out", tmp_path / "o2")
    assert result.exit_code == 2 and "no images" in result.output
    result = _invoke("translate", tmp_path, empty, "--out", tmp_path / "o3")
    assert result.exit_code == 2 and "no trained generator" in result.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_train_translate_option_errors(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    result = _invoke(
        "train", "translate", "--x", folder, "--method", "cut", "--out", tmp_path / "r"
    )
    assert result.exit_code == 2 and "both --x and --y" in result.output
    result = _invoke("train", "translate", folder, "--method", "cut", "--out", tmp_path / "r")
    assert result.exit_code == 2 and str(folder) in result.output
    result = _invoke("train", "translate", "--x", folder, "--y", folder, "--method", "pix2pix",
                     "--out", tmp_path / "r")  # fmt: skip
    assert result.exit_code == 2 and "--method must be one of cyclegan" in result.output


@pytest.mark.slow
def test_train_translate_under_accelerate_launch(pairs_dataset, tmp_path):
    """`accelerate launch --num_processes 2` on CPU trains the same command (gloo backend)."""
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "angiosynth.cli.main", "train", "translate", str(pairs_dataset.root),
        "--method", "cyclegan", "--config", str(config), "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 4


@pytest.mark.slow
def test_casgan_trains_with_a_segmenter_and_is_scored_by_it(
    trained, translated, pairs_dataset, tmp_path
):
    """segmenter -> CAS-GAN -> translate -> evaluate beside the baseline, through the CLI."""
    config = tmp_path / "micro.yaml"
    micro = MICRO | {
        "casgan": {"encoder_blocks": 1, "predictor_blocks": 1},
        "segmenter": {"model": {"channels": [4, 8], "groups": 2}, "data": {"crop_size": 32},
                      "train": {"max_steps": 4, "batch_size": 2, "log_every": 2}},
    }  # fmt: skip
    config.write_text(yaml.safe_dump(micro))
    segmenter, run, out = tmp_path / "segmenter", tmp_path / "casgan", tmp_path / "translated"
    result = _invoke("train", "segmenter", pairs_dataset.root, "--config", config,
                     "--held-out", "test", "--out", segmenter)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = _invoke("train", "translate", pairs_dataset.root, "--method", "casgan",
                     "--segmenter", segmenter, "--config", config, "--out", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run / "config.yaml").read_text())["segmenter"] == str(
        segmenter.resolve()
    )
    result = _invoke("translate", run, pairs_dataset.root, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    evaluation = tmp_path / "eval"
    result = _invoke("evaluate", "--translated", out, "--compare", translated,
                     "--segmenter", segmenter, "--real", pairs_dataset.root,
                     "--out", evaluation, "--device", "cpu", "--bootstrap", "5")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["label"] == "casgan" and list(metrics["compared"]) == ["cyclegan"]
    rows = {r.get("method") or r["set"]: r for r in metrics["summary"]}
    for name in ("casgan", "cyclegan", "truth (ceiling)", "input (no translation)"):
        assert 0 <= rows[name]["seg_dice"] <= 1 and 0 <= rows[name]["seg_cl_dice"] <= 1
    assert metrics["vessel_fidelity"]["segmenter"] == str(segmenter.resolve())
    assert "seg_dice" in result.output
