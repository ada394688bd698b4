"""The arterial-phase classifier: labels, training, saving, selection, CLI."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.conditions import prompt_for
from angiosynth.config import PhantomConfig, PhaseTrainConfig
from angiosynth.curation.arterial import (
    ARTERIAL_COLUMNS,
    DEFAULT_MARGIN,
    NEGATIVE,
    POSITIVE,
    SelectOptions,
    binary_metrics,
    calibrate_margin,
    resolve_margin,
    roc_auc,
    select_arterial,
    select_mask,
)
from angiosynth.curation.curate import CurateOptions, curate
from angiosynth.curation.dataset import CuratedDataset
from angiosynth.curation.rules import DEFAULT_RULES
from angiosynth.data.frames import ClassifierFrames, IntensityJitter, train_transform
from angiosynth.data.phase import (
    AMBIGUOUS,
    LabelRule,
    PhaseDataError,
    holdout_split,
    label_frames,
    read_annotations,
)
from angiosynth.models.classifiers import ClassifierFileError
from angiosynth.phantom.archive import write_archive
from angiosynth.training.phase import PhaseScorer, load_phase_model, train_phase_classifier
from conftest import write_key

runner = CliRunner()
#: Fast training settings for the tests (one short epoch on CPU).
FAST = PhaseTrainConfig(epochs=1, batch_size=16, device="cpu")


def _select(dataset: Path, model: Path, options: SelectOptions):
    """`select_arterial` with the phase classifier of `model` on the CPU."""
    return select_arterial(dataset, PhaseScorer(model, device="cpu"), options)


PROMPT = re.compile(
    r"This is an? (anterior|posterior) DSA scan taken in Plane ([AB]), with a primary angle of "
    r"(-?\d+)° and a secondary angle of (-?\d+)°\."
)


# --- fixtures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseData:
    archive: Path
    dataset: Path
    annotations: Path
    model: Path


@pytest.fixture(scope="module")
def phase_data(tmp_path_factory: pytest.TempPathFactory) -> PhaseData:
    """3 phantom patients (96 px, every series annotated) curated at 64 px; annotations of
    3 series per patient; a model trained for one epoch."""
    base = tmp_path_factory.mktemp("phase")
    config = PhantomConfig(image_size=96, annotate_share=1.0)
    write_archive(base / "archive", n_patients=3, seed=0, config=config)
    options = CurateOptions(size=64, key_file=write_key(base / "dataset.key"))
    curate(base / "archive" / "dicom", base / "dataset", DEFAULT_RULES, options)
    truth = pd.read_parquet(base / "archive" / "ground_truth.parquet")
    patients = truth.drop_duplicates("series_uid").set_index("series_uid")["patient_id"]
    annotations = pd.read_csv(base / "archive" / "annotations.csv")
    annotations = annotations[annotations["series_uid"].isin(_stored_series(base / "dataset"))]
    few = annotations.groupby(annotations["series_uid"].map(patients)).head(3)
    few.to_csv(base / "annotations.csv", index=False)
    model = base / "model"
    train_phase_classifier(base / "dataset", base / "annotations.csv", model, FAST)
    return PhaseData(base / "archive", base / "dataset", base / "annotations.csv", model)


def _stored_series(dataset: Path) -> set[str]:
    return set(pd.read_parquet(dataset / "frames.parquet")["series_uid"])


@pytest.fixture(scope="module")
def selected(phase_data: PhaseData):
    """`select_arterial` with the 2 most probable frames per series."""
    result = _select(phase_data.dataset, phase_data.model, SelectOptions(per_series=2))
    return result, pd.read_parquet(phase_data.dataset / "arterial.parquet")


# --- labels -----------------------------------------------------------------------------------


def _frames_table() -> pd.DataFrame:
    """Series S1: 10 frames every 0.5 s, masks 0-1; S2: not annotated; S3: no timing."""
    rows = []
    for uid, n, step in (("S1", 10, 0.5), ("S2", 4, 0.5), ("S3", 4, 0.0)):
        for i in range(n):
            row = {"frame_id": len(rows), "series_uid": uid, "patient_id": "P1", "split": "train"}
            rows.append({**row, "frame_index": i, "time_s": i * step, "is_mask": i < 2})
    return pd.DataFrame(rows)


def _annotations(*pairs: tuple[str, int]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["series_uid", "frame_index"])


def test_label_rule_marks_positives_negatives_and_ambiguous_frames() -> None:
    paper_rule = LabelRule.paper()
    annotations = _annotations(("S1", 5), ("S3", 2), ("X", 0))
    labelled, summary = label_frames(_frames_table(), annotations, paper_rule)

    labels = labelled.set_index("frame_index")["label"].to_dict()
    # annotated frame 5 at 2.5 s; masks 0-1; >= 1.5 s away: frames 0-2 and 8-9
    assert labels[5] == POSITIVE
    assert [labels[i] for i in (0, 1, 2, 8, 9)] == [NEGATIVE] * 5
    assert [labels[i] for i in (3, 4, 6, 7)] == [AMBIGUOUS] * 4
    assert set(labelled["series_uid"]) == {"S1"}
    assert summary.untimed_series == 1 and summary.unmatched_series == 1
    assert (summary.positives, summary.negatives, summary.ambiguous) == (1, 5, 4)


def test_default_label_rule_is_the_widened_one() -> None:
    labelled, _ = label_frames(_frames_table(), _annotations(("S1", 5)))

    labels = labelled.set_index("frame_index")["label"].tolist()
    # positives within 0.5 s of frame 5 (2.5 s); negatives >= 1.0 s away and the masks
    assert labels == [NEGATIVE, NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE, POSITIVE, POSITIVE,
                      NEGATIVE, NEGATIVE, NEGATIVE]  # fmt: skip
    assert LabelRule() == LabelRule(positive_window_s=0.5, negative_gap_s=1.0)


def test_positive_window_widens_positives_but_not_over_masks() -> None:
    rule = LabelRule(positive_window_s=0.5, negative_gap_s=1.5)
    labelled, _ = label_frames(_frames_table(), _annotations(("S1", 5), ("S1", 2)), rule)

    labels = labelled.set_index("frame_index")["label"].to_dict()
    # frame 1 is within 0.5 s of annotated frame 2 but is a mask frame: negative
    assert [labels[i] for i in (1, 2, 3, 4, 5, 6)] == [NEGATIVE, *[POSITIVE] * 5]
    assert [labels[i] for i in (7, 8, 9)] == [AMBIGUOUS, NEGATIVE, NEGATIVE]


def test_label_rule_rejects_overlapping_windows() -> None:
    with pytest.raises(ValueError, match="negative gap"):
        LabelRule(positive_window_s=1.0, negative_gap_s=1.0)


def test_read_annotations_names_the_problem(tmp_path: Path) -> None:
    bad_column = tmp_path / "a.csv"
    bad_column.write_text("series_uid,frame\n1.2.3,4\n")
    bad_index = tmp_path / "b.csv"
    bad_index.write_text("series_uid,frame_index\n1.2.3,-1\n")

    with pytest.raises(PhaseDataError, match="not found"):
        read_annotations(tmp_path / "missing.csv")
    with pytest.raises(PhaseDataError, match="missing column 'frame_index'"):
        read_annotations(bad_column)
    with pytest.raises(PhaseDataError, match="non-negative integers"):
        read_annotations(bad_index)


def _labelled(patients: int, holdout_patients: int) -> pd.DataFrame:
    rows = []
    for p in range(patients):
        split = "test" if p < holdout_patients else "train"
        for s in range(2):
            for label in (POSITIVE, NEGATIVE, NEGATIVE):
                rows.append({"patient_id": f"P{p}", "series_uid": f"S{p}-{s}", "split": split,
                             "label": label})  # fmt: skip
    return pd.DataFrame(rows)


def test_holdout_uses_the_dataset_split_when_it_is_large_enough() -> None:
    labelled = _labelled(patients=10, holdout_patients=3)

    holdout, info = holdout_split(labelled, seed=0, min_series=5)

    assert info["source"].startswith("dataset split")
    assert np.array_equal(holdout, labelled["split"].eq("test").to_numpy())
    assert info["holdout"]["series"] == 6 and info["train"]["series"] == 14


def test_holdout_falls_back_to_a_seeded_patient_split() -> None:
    labelled = _labelled(patients=5, holdout_patients=1)

    holdout, info = holdout_split(labelled, seed=3, min_series=5)
    again, _ = holdout_split(labelled, seed=3, min_series=5)

    assert info["source"].startswith("seeded patient split")
    assert np.array_equal(holdout, again)
    held = set(labelled.loc[holdout, "patient_id"])
    assert len(held) == 1 and held.isdisjoint(labelled.loc[~holdout, "patient_id"])


# --- metrics, transforms ----------------------------------------------------------------------


def test_binary_metrics_and_auc() -> None:
    probability = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.1])
    label = np.array([1, 1, 1, 0, 0, 0])

    metrics = binary_metrics(probability, label)

    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (2, 1, 1, 2)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert roc_auc(np.array([0.5, 0.7]), np.array([1, 1])) is None


def test_augmentation_keeps_shape_and_clips_the_jitter() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 128, 128)

    out = train_transform()(image)
    identity = IntensityJitter(gain=0.0, offset=0.0, gamma=1.0)(image)
    strong = IntensityJitter(gain=0.5, offset=0.5, gamma=3.0)

    assert out.shape == (1, 128, 128)
    assert torch.allclose(identity, image)
    # g x^gamma + b with the draws u of torch.rand(3), clipped to [0, 1]
    torch.manual_seed(1)
    u = torch.rand(3)
    g, b, gamma = 1 + 0.5 * (2 * u[0] - 1), 0.5 * (2 * u[1] - 1), 3.0 ** (2 * u[2] - 1)
    torch.manual_seed(1)
    jittered = strong(image)
    torch.testing.assert_close(jittered, (g * image**gamma + b).clamp(0, 1))


def test_phase_frames_resize_stored_frames_to_128(phase_data: PhaseData) -> None:
    dataset = CuratedDataset(phase_data.dataset)
    frames = ClassifierFrames(dataset, np.array([3, 0, 1]), np.array([1, 0, 0]))

    batch = frames.__getitems__([0, 1])
    image, label = frames[0]

    assert dataset.image_size == 64
    assert image.shape == (1, 128, 128) and image.dtype == torch.float32
    assert float(label) == 1.0
    assert torch.equal(batch[0][0], image)


# --- training, saving -------------------------------------------------------------------------


def test_train_writes_the_model_directory(phase_data: PhaseData) -> None:
    model = phase_data.model
    config = json.loads((model / "config.json").read_text())
    metrics = json.loads((model / "metrics.json").read_text())
    log = [json.loads(line) for line in (model / "log.jsonl").read_text().splitlines()]
    labels = pd.read_parquet(model / "labels.parquet")

    assert config["architecture"]["name"] == "resnet18"
    assert config["input"]["shape"] == [1, 128, 128]
    assert config["label_rule"]["negative_gap_s"] == 1.0
    assert config["training"]["epochs"] == 1 and config["seed"] == 0
    assert config["dataset"] == str(phase_data.dataset.resolve())
    assert set(metrics["holdout"]) >= {"precision", "recall", "accuracy", "roc_auc"}
    epochs = [r for r in log if "holdout" in r]
    assert len(metrics["train_loss"]) == 1 and len(epochs) == 1
    assert epochs[0]["train_loss"] == metrics["train_loss"][0]
    positives = metrics["counts"]["labels"]["positives"]
    assert positives >= 9  # one annotated frame per series, widened by the 0.5 s window
    assert positives == int((labels["label"] == 1).sum())
    assert set(labels["role"]) == {"train", "holdout"}
    by_role = labels.groupby("role")["patient_id"].unique()
    assert set(by_role["train"]).isdisjoint(by_role["holdout"])
    assert not list(model.glob(".*tmp"))
    calibrated = config["selection"]
    assert calibrated == metrics["selection"] and calibrated["series"] >= 1
    assert calibrated["margin"] == pytest.approx(
        (calibrated["positive_gap_median"] + calibrated["negative_gap_median"]) / 2, abs=1e-3
    )


def test_saved_model_loads_and_gives_the_same_outputs(phase_data: PhaseData) -> None:
    model, config = load_phase_model(phase_data.model)
    again, _ = load_phase_model(phase_data.model)
    frames = torch.rand(3, 1, 128, 128)

    with torch.no_grad():
        first, second = model(frames), again(frames)

    assert config["threshold"] == 0.5
    assert torch.equal(first, second)
    stored = load_file(phase_data.model / "model.safetensors")
    assert all(torch.equal(stored[k], v.contiguous()) for k, v in model.state_dict().items())


def test_same_seed_gives_identical_weights(phase_data: PhaseData, tmp_path: Path) -> None:
    args = (phase_data.dataset, phase_data.annotations)
    train_phase_classifier(*args, tmp_path / "again", FAST)

    first = load_file(phase_data.model / "model.safetensors")
    second = load_file(tmp_path / "again" / "model.safetensors")

    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_train_refuses_to_replace_a_model(phase_data: PhaseData) -> None:
    with pytest.raises(FileExistsError, match="--overwrite"):
        train_phase_classifier(phase_data.dataset, phase_data.annotations, phase_data.model, FAST)


def test_train_rejects_annotations_without_matching_frames(
    phase_data: PhaseData, tmp_path: Path
) -> None:
    annotations = tmp_path / "none.csv"
    _annotations(("1.2.3", 0)).to_csv(annotations, index=False)

    with pytest.raises(PhaseDataError, match="no annotation matches"):
        train_phase_classifier(phase_data.dataset, annotations, tmp_path / "m", FAST)


# --- selection --------------------------------------------------------------------------------


def test_select_writes_k_frames_per_series_with_prompts(phase_data: PhaseData, selected) -> None:
    result, table = selected
    frames = pd.read_parquet(phase_data.dataset / "frames.parquet")
    scores = pd.read_parquet(phase_data.dataset / "phase_scores.parquet")

    assert list(table.columns) == ARTERIAL_COLUMNS
    assert table.groupby("series_uid").size().eq(2).all()
    assert table["series_uid"].nunique() == result.series == frames["series_uid"].nunique()
    assert set(scores["frame_id"]) == set(frames["frame_id"])
    # each series keeps its two highest-scored frames, with their scores
    by_frame = scores.set_index("frame_id")["probability"]
    assert table["probability"].tolist() == by_frame[table["frame_id"]].tolist()
    top2 = scores.merge(frames[["frame_id", "series_uid"]]).groupby("series_uid")["probability"]
    assert sorted(table["probability"]) == sorted(top2.nlargest(2).tolist())
    for row in table.itertuples():
        match = PROMPT.fullmatch(row.prompt)
        assert match, row.prompt
        assert match.group(1) == row.circulation and match.group(2) == row.plane
        assert row.prompt == prompt_for(
            row.circulation, row.plane, row.primary_angle, row.secondary_angle
        )


def test_select_reports_metrics_against_the_phantom_truth(phase_data: PhaseData, selected):
    result, _ = selected
    metrics = json.loads((phase_data.dataset / "phase_metrics.json").read_text())
    report = (phase_data.dataset / "report.md").read_text()

    assert metrics == result.metrics
    assert metrics["selection"]["rule"] == "top 2 frames per series"
    assert metrics["ground_truth"]["file"].endswith("ground_truth.parquet")
    truth = pd.read_parquet(phase_data.archive / "ground_truth.parquet")
    chosen = selected[1].merge(pd.read_parquet(phase_data.dataset / "frames.parquet"),
                               on=["frame_id", "series_uid"])  # fmt: skip
    hits = chosen.merge(truth, on=["series_uid", "frame_index"])["is_arterial"]
    assert metrics["ground_truth"]["selection"]["precision"] == pytest.approx(hits.mean())
    assert "roc_auc" in metrics["ground_truth"]["classifier_at_0.5"]
    assert "precision" in metrics["holdout"]
    assert f"Table 1: arterial-phase frames (N = {result.selected})" in report
    assert "Arterial-phase classifier" in report


def test_select_mask_by_threshold_and_top_k() -> None:
    scores = pd.DataFrame(
        {"series_uid": ["a", "a", "a", "b", "b"], "probability": [0.2, 0.9, 0.6, 0.4, 0.4]}
    )

    assert select_mask(scores, threshold=0.5).tolist() == [False, True, True, False, False]
    assert select_mask(scores, per_series=1).tolist() == [False, True, False, True, False]
    assert select_mask(scores, per_series=5).all()


def test_select_mask_with_a_per_series_logit_margin() -> None:
    logits = np.array([8.0, 6.0, 2.0, 1.0, -3.0, 0.5])
    scores = pd.DataFrame(
        {"series_uid": ["a", "a", "a", "b", "b", "b"], "probability": 1 / (1 + np.exp(-logits))}
    )

    # a: max 8 -> keep logits >= 3; b: max 1 -> keep logits >= -4, then probability >= 0.5
    assert select_mask(scores, margin=5.0).tolist() == [True, True, False, True, False, True]
    assert select_mask(scores, margin=None).tolist() == [True, True, True, True, False, True]


def test_select_mask_keeps_the_run_around_each_series_peak() -> None:
    # series a in shuffled row order: frames 0..5 with a second, later burst at frames 4-5
    scores = pd.DataFrame({
        "series_uid": ["a", "a", "a", "a", "a", "a", "b", "b"],
        "frame_index": [3, 0, 1, 2, 5, 4, 0, 1],
        "probability": [0.2, 0.6, 0.95, 0.7, 0.8, 0.9, 0.3, 0.4],
    })  # fmt: skip

    assert select_mask(scores, threshold=0.5, contiguous=True).tolist() == [
        False, True, True, True, False, False, False, False
    ]  # fmt: skip
    assert select_mask(scores, threshold=0.5).tolist() == [
        False, True, True, True, True, True, False, False
    ]  # fmt: skip


def test_calibrated_margin_lies_halfway_between_the_median_gaps() -> None:
    # logits per frame; series a: peak 10, lowest positive 7 (gap 3), highest negative 2 (gap 8);
    # b: peak 6, lowest positive 5 (gap 1), highest negative 0 (gap 6); c has no negative
    logits = {1: 10.0, 2: 8.0, 3: 7.0, 4: 2.0, 5: -5.0, 6: 4.0,  # a (6: unlabelled)
              7: 6.0, 8: 5.0, 9: 0.0, 10: 3.0, 11: 2.0}  # fmt: skip
    series = ["a"] * 6 + ["b"] * 3 + ["c"] * 2
    probability = 1 / (1 + np.exp(-np.array(list(logits.values()))))
    scores = pd.DataFrame(
        {"frame_id": list(logits), "series_uid": series, "probability": probability}
    )
    labelled = pd.DataFrame({
        "frame_id": [1, 2, 3, 4, 5, 7, 8, 9, 10, 11],
        "series_uid": ["a"] * 5 + ["b"] * 3 + ["c"] * 2,
        "label": [1, 1, 1, 0, 0, 1, 1, 0, 1, 1],
    })  # fmt: skip

    calibrated = calibrate_margin(scores, labelled)

    assert calibrated["series"] == 2
    assert calibrated["positive_gap_median"] == pytest.approx(2.0)  # median of 3 and 1
    assert calibrated["negative_gap_median"] == pytest.approx(7.0)  # median of 8 and 6
    assert calibrated["margin"] == pytest.approx(4.5)
    assert calibrate_margin(scores, labelled[labelled["label"] == 1]) is None


def test_auto_margin_takes_the_model_calibration_or_the_default() -> None:
    auto = SelectOptions()

    assert resolve_margin(auto, {"selection": {"margin": 4.25}}).margin == 4.25
    assert resolve_margin(auto, {"selection": None}).margin == DEFAULT_MARGIN
    assert resolve_margin(SelectOptions(margin=3.0), {"selection": {"margin": 4.25}}).margin == 3
    with pytest.raises(ValueError, match="number >= 0 or auto"):
        SelectOptions(margin="wide")


def test_select_uses_the_calibrated_margin_by_default(phase_data: PhaseData, tmp_path: Path):
    copy = tmp_path / "dataset"
    shutil.copytree(phase_data.dataset, copy)
    calibrated = json.loads((phase_data.model / "config.json").read_text())["selection"]

    result = _select(copy, phase_data.model, SelectOptions())

    assert result.metrics["selection"]["margin"] == calibrated["margin"]
    assert f"- {calibrated['margin']:g}" in result.metrics["selection"]["rule"]


def test_select_rejects_a_directory_without_a_model(phase_data: PhaseData, tmp_path: Path):
    with pytest.raises(ClassifierFileError, match=r"no config\.json"):
        _select(phase_data.dataset, tmp_path, SelectOptions())


# --- CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "select"])
def test_cli_help(command: str) -> None:
    result = runner.invoke(app, ["phase", command, "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "[default: " in result.output
    if command == "train":
        assert "1.5" in result.output and "pos_weight" in result.output


def test_cli_errors_are_one_line(phase_data: PhaseData, tmp_path: Path) -> None:
    missing = runner.invoke(
        app,
        ["phase", "train", str(phase_data.dataset), "--annotations", str(tmp_path / "no.csv"),
         "--out", str(tmp_path / "m")],
    )  # fmt: skip
    no_model = runner.invoke(
        app, ["phase", "select", str(phase_data.dataset), "--model", str(tmp_path)]
    )
    no_dataset = runner.invoke(
        app, ["phase", "select", str(tmp_path), "--model", str(phase_data.model)]
    )
    bad_margin = runner.invoke(
        app, ["phase", "select", str(phase_data.dataset), "--model", str(phase_data.model),
              "--margin", "wide"],
    )  # fmt: skip

    cases = (
        (missing, "no.csv: annotations file not found"),
        (no_model, "no config.json"),
        (no_dataset, "not a curated dataset"),
        (bad_margin, "--margin must be a number >= 0 or auto, got 'wide'"),
    )
    for result, words in cases:
        assert result.exit_code == 2, result.output
        assert words in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_cli_trains_from_a_yaml_config_with_overrides(phase_data: PhaseData, tmp_path: Path):
    config = tmp_path / "phase.yaml"
    config.write_text("epochs: 1\nbatch_size: 16\ndevice: cpu\nbalance: none\n")
    out = tmp_path / "m"
    result = runner.invoke(
        app,
        ["phase", "train", str(phase_data.dataset), "--annotations", str(phase_data.annotations),
         "--out", str(out), "--config", str(config), "--lr", "0.002"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    training = json.loads((out / "config.json").read_text())["training"]
    assert (training["epochs"], training["batch_size"], training["lr"]) == (1, 16, 0.002)
    assert training["balance"] == "none" and training["pos_weight"] == 1.0
    wrong = runner.invoke(
        app,
        ["phase", "train", str(phase_data.dataset), "--annotations", str(phase_data.annotations),
         "--out", str(out), "--balance", "odd", "--overwrite"],
    )  # fmt: skip
    assert wrong.exit_code == 2
    assert "error: balance must be one of pos_weight, sampler, none, got 'odd'" in wrong.output


def test_the_shipped_phase_config_is_the_default():
    from angiosynth.config import load_config

    shipped = Path(__file__).resolve().parents[2] / "configs" / "phase.yaml"
    assert load_config(shipped, PhaseTrainConfig) == PhaseTrainConfig()
