"""Evaluation of translations: the vessel map, PSNR / SSIM, and `evaluate --translated` on
drawn frames (the data module's loaders replaced by in-memory stand-ins)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import line
from typer.testing import CliRunner

from angiosynth.cli.main import app
from angiosynth.dicom.subtraction import dsa_display
from angiosynth.evaluation import evaluate, fidelity, translation
from angiosynth.evaluation.features import EvaluationError
from angiosynth.evaluation.fidelity import (
    fidelity_summary,
    psnr_scores,
    ssim_scores,
    vessel_fidelity,
    vessel_map,
)
from angiosynth.evaluation.translation import (
    TranslationEvalOptions,
    Translations,
    aligned,
    evaluate_translation,
    read_translations,
    translation_labels,
)
from angiosynth.evaluation.translation_report import build_examples_figure, build_pairs_figure

runner = CliRunner()
SIZE = 64
N = 8
OPTIONS = TranslationEvalOptions(bootstrap=5, batch_size=8, device="cpu")


@dataclass
class Pairs:
    """Stand-in for data.translation.PairedTruth: (n, H, W) each, floats in [0, 1]."""

    noncontrast: np.ndarray
    contrast: np.ndarray
    dsa: np.ndarray
    vessel_mask: np.ndarray


def drawn_pairs(n: int = N, size: int = SIZE, seed: int = 0) -> Pairs:
    """Non-contrast frames (a brightness ramp with noise, black outside a 4-px shutter band),
    the same frames with three 2-px vessels 0.3 darker, and the vessel masks; values are
    multiples of 1/255 so that 8-bit PNGs hold them exactly."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    inside = np.zeros((size, size), bool)
    inside[4:-4, 4:-4] = True
    native, contrast, masks = [], [], []
    for _ in range(n):
        base = 0.45 + 0.2 * xx + 0.1 * yy + rng.normal(0, 0.01, (size, size))
        mask = np.zeros((size, size), bool)
        for r0, r1 in rng.integers(10, size - 10, (3, 2)):
            rr, cc = line(int(r0), 10, int(r1), size - 11)
            mask[rr, cc] = mask[rr + 1, cc] = True
        native.append(_quantised(np.where(inside, base, 0)))
        contrast.append(_quantised(np.where(inside, base - 0.3 * mask, 0)))
        masks.append(mask)
    native, contrast = np.stack(native), np.stack(contrast)
    return Pairs(native, contrast, dsa_display(native - contrast), np.stack(masks))


def _quantised(image: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(image, 0, 1) * 255) / 255).astype(np.float32)


def write_translations(
    folder: Path, frames: np.ndarray, kind: str = "phantom-twin", method: str = "test"
) -> Path:
    """A translations folder as `angiosynth translate` writes it (8-bit PNGs)."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for i, frame in enumerate(frames):
        name = f"images/{i:03d}.png"
        Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(folder / name)
        paired = kind == "phantom-twin"
        rows.append({"output": name, "input": f"frame_id:{100 + i}" if paired else f"{i}.png",
                     "frame_id": 100 + i if paired else None, "kind": kind,
                     "height": frame.shape[0], "width": frame.shape[1], "bits": 8})  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "translations.csv", index=False)
    meta = {"run": "run", "method": method, "input": "x", "dataset": str(folder.parent / "data")}
    (folder / "translate.json").write_text(json.dumps(meta))
    return folder


class Source:
    """Stand-in for data.translation.ImageSource over in-memory frames."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames
        self.names = [f"real-{i}.png" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, positions) -> np.ndarray:
        return self.frames[np.asarray(positions)]


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    """One REAL folder for the module, so its feature cache is filled once."""
    return tmp_path_factory.mktemp("real")


@pytest.fixture
def loaders(monkeypatch):
    """The real angiograms are the true contrast frames; the truth answers for frame ids
    100 .. 107 of the recorded dataset."""
    pairs = drawn_pairs()
    calls = []

    def truth(root, frame_ids):
        calls.append((Path(root).name, list(frame_ids)))
        return Pairs(*(getattr(pairs, f)[np.asarray(frame_ids) - 100] for f in vars(pairs)))

    monkeypatch.setattr(translation, "real_angiograms", lambda real, split: Source(pairs.contrast))
    monkeypatch.setattr(translation, "paired_truth", truth)
    return pairs, calls


# --- arrays -----------------------------------------------------------------------------------


def test_the_vessel_map_windows_the_difference_as_dsa_display_does():
    difference = np.random.default_rng(0).gamma(1.0, 0.05, (2, 32, 32)).astype(np.float32)
    field = np.ones_like(difference, bool)
    scale = fidelity.difference_scale(difference, field)

    ours = vessel_map(difference, np.zeros_like(difference), field, scale)

    expected = np.stack([dsa_display(d) for d in difference])
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_an_exact_translation_has_the_truths_vessel_map():
    pairs = drawn_pairs()

    fidelity = vessel_fidelity(pairs.noncontrast, pairs.contrast, pairs.contrast,
                               pairs.vessel_mask)  # fmt: skip

    np.testing.assert_array_equal(fidelity.maps["translation"], fidelity.maps["truth"])
    np.testing.assert_array_equal(fidelity.masks["translation"], fidelity.masks["truth"])
    table = fidelity.table
    assert (table["translation_dice"] == table["truth_dice"]).all()
    assert table["truth_dice"].mean() > 0.9 and table["truth_cl_dice"].mean() > 0.9


def test_a_blank_translation_has_an_empty_vessel_map():
    pairs = drawn_pairs()

    fidelity = vessel_fidelity(pairs.noncontrast, pairs.noncontrast, pairs.contrast,
                               pairs.vessel_mask)  # fmt: skip

    inside = fidelity.field
    assert not fidelity.masks["translation"].any()
    assert np.allclose(fidelity.maps["translation"][inside], 0.6)
    assert (fidelity.table["translation_dice"] == 0).all()
    assert (fidelity.table["translation_cl_dice"] == 0).all()
    np.testing.assert_array_equal(fidelity.table["translation_psnr"], fidelity.table["input_psnr"])


def test_a_weaker_contrast_loses_vessels_in_the_true_window():
    pairs = drawn_pairs()
    faint = pairs.noncontrast - 0.25 * (pairs.noncontrast - pairs.contrast)

    fidelity = vessel_fidelity(pairs.noncontrast, faint, pairs.contrast, pairs.vessel_mask)

    assert fidelity.table["translation_dice"].mean() < 0.5 * fidelity.table["truth_dice"].mean()


def test_scoring_the_translation_alone_gives_its_columns_of_the_full_scoring():
    pairs = drawn_pairs(n=3)
    faint = pairs.noncontrast - 0.5 * (pairs.noncontrast - pairs.contrast)
    args = (pairs.noncontrast, faint, pairs.contrast, pairs.vessel_mask)

    full = vessel_fidelity(*args)
    alone = vessel_fidelity(*args, candidates=("translation",))

    assert list(alone.maps) == list(alone.masks) == ["translation"]
    assert list(alone.table.columns) == [c for c in full.table if c.startswith("translation_")]
    pd.testing.assert_frame_equal(alone.table, full.table[alone.table.columns])
    assert fidelity_summary(alone.table) == {
        "translation": fidelity_summary(full.table)["translation"]
    }
    with pytest.raises(ValueError, match="'truht'"):
        vessel_fidelity(*args, candidates=("truht",))


def test_a_segmentation_is_scored_inside_the_field_for_every_candidate():
    pairs = drawn_pairs(n=3)
    seen = []

    def oracle(frames):  # segments exactly the true vessels of contrast frames, nothing else
        seen.append(frames)
        is_contrast = [np.array_equal(f, c) for f, c in zip(frames, pairs.contrast, strict=True)]
        return np.where(np.array(is_contrast)[:, None, None], pairs.vessel_mask, False)

    fidelity = vessel_fidelity(pairs.noncontrast, pairs.contrast, pairs.contrast,
                               pairs.vessel_mask, segment=oracle)  # fmt: skip

    table = fidelity.table
    assert len(seen) == 3  # translation, truth, input
    inside = (pairs.vessel_mask & fidelity.field).sum((1, 2))
    expected = 2 * inside / (inside + pairs.vessel_mask.sum((1, 2)))  # outside the field: missed
    np.testing.assert_allclose(table["translation_seg_dice"], expected)
    np.testing.assert_array_equal(table["truth_seg_dice"], table["translation_seg_dice"])
    assert (table["input_seg_dice"] == 0).all() and (table["input_seg_cl_dice"] == 0).all()
    summary = fidelity_summary(table)
    assert summary["truth"]["seg_dice"] == pytest.approx(expected.mean())
    assert (
        "seg_dice"
        not in fidelity_summary(
            vessel_fidelity(
                pairs.noncontrast, pairs.contrast, pairs.contrast, pairs.vessel_mask
            ).table
        )["truth"]
    )


def test_psnr_and_ssim_inside_the_field():
    truth = np.full((2, 16, 16), 0.5, np.float32)
    field = np.zeros_like(truth, bool)
    field[:, 4:12, 4:12] = True
    off = truth.copy()
    off[0][field[0]] += 0.1  # MSE 0.01 inside: 20 dB
    off[1][~field[1]] = 0.0  # differs outside only: identical inside

    psnr = psnr_scores(off, truth, field)

    assert psnr[0] == pytest.approx(20.0)
    assert psnr[1] == np.inf
    assert ssim_scores(truth, truth, field) == pytest.approx([1.0, 1.0])


def test_infinite_psnr_is_counted_not_averaged():
    table = pd.DataFrame({
        f"{name}_{measure}": [1.0, 1.0, 1.0]
        for name in fidelity.CANDIDATES for measure in ("dice", "cl_dice", "ssim")
    } | {"translation_psnr": [np.inf, 30.0, 40.0], "truth_psnr": [np.nan] * 3,
         "input_psnr": [np.inf] * 3})  # fmt: skip

    summary = fidelity_summary(table)

    assert summary["translation"]["psnr"] == 35.0
    assert summary["translation"]["identical_frames"] == 1
    assert summary["input"]["psnr"] is None and summary["input"]["identical_frames"] == 3
    assert summary["truth"]["psnr"] is None and summary["truth"]["ssim"] is None


# --- reading ------------------------------------------------------------------------------------


def test_translations_folder_errors_name_the_file(tmp_path):
    with pytest.raises(EvaluationError, match=r"no translations\.csv"):
        read_translations(tmp_path)
    folder = write_translations(tmp_path / "t", drawn_pairs(n=2).contrast)
    (folder / "images" / "001.png").unlink()
    with pytest.raises(EvaluationError, match=r"001\.png: listed in translations.csv but missing"):
        read_translations(folder)
    pd.DataFrame({"file": ["a.png"]}).to_csv(folder / "translations.csv", index=False)
    with pytest.raises(EvaluationError, match="no 'output' column"):
        read_translations(folder)


def test_translations_are_read_as_written(tmp_path):
    pairs = drawn_pairs(n=3)
    folder = write_translations(tmp_path / "t", pairs.contrast)

    read = read_translations(folder)

    assert read.side() == SIZE and read.meta["method"] == "test"
    np.testing.assert_array_equal(np.stack(read.images), pairs.contrast)
    assert list(read.table["frame_id"]) == [100, 101, 102]


def _in_memory(folder: str, method: str | None) -> Translations:
    return Translations(Path(folder), pd.DataFrame(), [], {"method": method} if method else {})


def test_labels_are_the_methods_made_unique():
    every = [_in_memory("a/cas", "cas-gan"), _in_memory("b/base", "cyclegan"),
             _in_memory("c/base2", "cyclegan"), _in_memory("d/no-method", None),
             _in_memory("e/x", "truth"), _in_memory("f/y", "cyclegan")]  # fmt: skip

    labels = translation_labels(every)

    assert labels == ["cas-gan", "cyclegan", "cyclegan-2", "no-method", "truth-2", "cyclegan-3"]


def test_a_compared_folder_is_aligned_to_the_primarys_inputs(tmp_path):
    pairs = drawn_pairs(n=4)
    primary = read_translations(write_translations(tmp_path / "a", pairs.contrast))
    other = write_translations(tmp_path / "b", pairs.noncontrast)
    table = pd.read_csv(other / "translations.csv")
    table.iloc[[2, 0, 3, 1]].to_csv(other / "translations.csv", index=False)

    again = aligned(primary, read_translations(other))

    assert again.table["input"].tolist() == primary.table["input"].tolist()
    np.testing.assert_array_equal(np.stack(again.images), pairs.noncontrast)


def test_a_compared_folder_of_other_inputs_is_refused(loaders, tmp_path):
    pairs, _ = loaders
    primary = write_translations(tmp_path / "primary", pairs.contrast)
    fewer = write_translations(tmp_path / "fewer", pairs.contrast[:5])
    files = write_translations(tmp_path / "files", pairs.contrast, kind="folder")

    for other, counts in ((fewer, f"3 of its {N} missing, 0 others"),
                          (files, f"{N} of its {N} missing, {N} others")):  # fmt: skip
        with pytest.raises(EvaluationError) as raised:
            evaluate_translation(primary, tmp_path, tmp_path / "eval", OPTIONS, compare=[other])
        message = str(raised.value)
        assert message.startswith(f"{other}: not translations of the inputs of {primary}")
        assert f"(translations.csv 'input': {counts})" in message and "\n" not in message
    assert not (tmp_path / "eval").exists()


# --- the evaluation (Inception on 8-frame sets) ---------------------------------------------------


def test_a_perfect_translation_scores_the_ceiling_and_fid_zero(loaders, real_dir, tmp_path):
    pairs, calls = loaders
    folder = write_translations(tmp_path / "perfect", pairs.contrast)
    real = real_dir

    result = evaluate_translation(folder, real, tmp_path / "eval", OPTIONS)

    stored = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stored["summary"] == json.loads(json.dumps(result["summary"]))
    assert calls == [("data", list(range(100, 108)))]  # the dataset of translate.json
    dist = result["distribution"]
    assert dist["n_fake"] == N and dist["n_real"] == N
    assert abs(dist["fid"]) < 1e-3  # the same set: only the unbiased KID and MMD go below 0
    assert dist["kid"]["mean"] < 1e-3 and dist["mmd"]["mmd2"] < 1e-3
    assert result["warnings"][:2] == dist["warnings"]
    assert dist["warnings"][0].startswith("real angiograms: 8 samples < 2048")
    assert dist["warnings"][1].startswith("translations: 8 samples < 2048")
    paired = result["vessel_fidelity"]
    assert paired["n_pairs"] == N
    assert paired["translation"]["dice"] == paired["truth"]["dice"] > 0.9
    assert paired["translation"]["ssim"] == 1.0 and paired["translation"]["identical_frames"] == N
    assert paired["input"]["dice"] == 0.0 and "difference" in paired["method"]
    # the untranslated inputs are further from the real angiograms than the perfect translation
    untranslated = result["summary"][-1]
    assert untranslated["set"] == "input (no translation)"
    assert untranslated["fid"] > 1 and result["input_distribution"]["n_fake"] == N
    assert result["protocol"]["frame_size"] == 256 and result["inputs"]["kinds"] == {
        "phantom-twin": N
    }
    frames = pd.read_parquet(tmp_path / "eval" / "frames.parquet")
    assert len(frames) == N and frames["frame_id"].tolist() == list(range(100, 108))
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "truth (ceiling)" in report and 'src="pairs.png"' in report
    assert (tmp_path / "eval" / "pairs.png").exists() and (tmp_path / "eval" / "pairs.pdf").exists()

    blank = write_translations(tmp_path / "blank", pairs.noncontrast)
    again = evaluate_translation(blank, real, tmp_path / "eval-blank", OPTIONS)

    assert again["inputs"]["real_features_cached"] is True
    assert again["vessel_fidelity"]["translation"]["dice"] == 0.0
    assert again["vessel_fidelity"]["truth"]["dice"] == paired["truth"]["dice"]
    assert again["distribution"]["fid"] > 1.0


def test_translations_without_pairs_get_distribution_metrics_only(loaders, real_dir, tmp_path):
    pairs, calls = loaders
    folder = write_translations(tmp_path / "folder", pairs.contrast[:4], kind="folder")

    result = evaluate_translation(folder, real_dir, tmp_path / "eval", OPTIONS)

    assert calls == [] and result["vessel_fidelity"] is None
    assert [row["set"] for row in result["summary"]] == ["translation"]
    assert result["summary"][0]["dice"] is None
    assert (tmp_path / "eval" / "examples.png").exists()
    assert not (tmp_path / "eval" / "frames.parquet").exists()


@pytest.fixture
def block_features(monkeypatch):
    """Inception replaced by 4 x 4 block means (16 features: what is tested is how the
    evaluation scores several translations, not the network); the descriptions of the feature
    passes made, in order."""
    passes = []

    def features(images, total, protocol, *, desc, **_):
        passes.append(desc)
        stacked = np.stack([np.asarray(image, np.float64) for image in images])
        n, h, w = stacked.shape
        return stacked.reshape(n, 4, h // 4, 4, w // 4).mean(axis=(2, 4)).reshape(n, 16)

    monkeypatch.setattr(evaluate, "inception_features", features)
    return passes


def test_a_compared_translation_scores_as_it_does_alone(loaders, block_features, tmp_path):
    pairs, _ = loaders
    real = tmp_path / "real"
    real.mkdir()
    perfect = write_translations(tmp_path / "perfect", pairs.contrast, method="cas-gan")
    faint = pairs.noncontrast - 0.5 * (pairs.noncontrast - pairs.contrast)
    faint = write_translations(tmp_path / "faint", faint)
    blank = write_translations(tmp_path / "blank", pairs.noncontrast)

    result = evaluate_translation(perfect, real, tmp_path / "eval", OPTIONS,
                                  compare=[faint, blank])  # fmt: skip
    passes, block_features[:] = list(block_features), []
    alone = evaluate_translation(faint, real, tmp_path / "alone", OPTIONS)

    # one real feature pass, shared by the three translations (the alone run reads its cache)
    assert passes == ["real angiograms", "translated features (cas-gan)",
                      "translated features (test)", "translated features (test-2)",
                      "input features"]  # fmt: skip
    assert block_features == ["translated features (test)", "input features"]
    assert result["label"] == "cas-gan" and list(result["compared"]) == ["test", "test-2"]
    compared = result["compared"]["test"]
    assert compared["distribution"] == alone["distribution"]  # FID, KID, MMD, bootstrap ...
    assert compared["vessel_fidelity"]["translation"] == alone["vessel_fidelity"]["translation"]
    assert "truth" not in compared["vessel_fidelity"]
    assert compared["translated"] == str(faint.resolve()) and compared["translate"]["run"] == "run"
    assert result["compared"]["test-2"]["vessel_fidelity"]["translation"]["dice"] == 0.0
    # the primary's numbers are at the top level, as without --compare
    assert abs(result["distribution"]["fid"]) < 1e-6
    paired = result["vessel_fidelity"]
    assert paired["translation"]["dice"] == paired["truth"]["dice"] > 0.9
    assert paired["truth"] == alone["vessel_fidelity"]["truth"]
    assert result["input_distribution"] == alone["input_distribution"]
    summary = result["summary"]
    assert [(r["set"], r.get("method")) for r in summary] == [
        ("translation", "cas-gan"), ("translation", "test"), ("translation", "test-2"),
        ("truth (ceiling)", None), ("input (no translation)", None),
    ]  # fmt: skip
    assert summary[1] == alone["summary"][0] and summary[3:] == alone["summary"][1:]
    frames = pd.read_parquet(tmp_path / "eval" / "frames.parquet")
    single = pd.read_parquet(tmp_path / "alone" / "frames.parquet")
    for measure in ("dice", "cl_dice", "psnr", "ssim"):
        np.testing.assert_array_equal(frames[f"test_{measure}"], single[f"translation_{measure}"])
    assert frames["test-2_output"].tolist() == single["output"].tolist()
    assert "test_truth_dice" not in frames and (frames["test-2_dice"] == 0).all()
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "compared with <b>test</b>" in report and "<b>test-2</b>: FID" in report
    assert report.count("<td>translation</td>") == 3


# --- the figures --------------------------------------------------------------------------------


def test_the_pairs_figure_shows_each_translation_and_its_vessel_map():
    pairs = drawn_pairs(n=4)
    faint = pairs.noncontrast - 0.5 * (pairs.noncontrast - pairs.contrast)
    truth_args = (pairs.contrast, pairs.vessel_mask)
    first = vessel_fidelity(pairs.noncontrast, pairs.contrast, *truth_args)
    second = vessel_fidelity(pairs.noncontrast, faint, *truth_args, candidates=("translation",))
    shown = [("cas-gan", list(pairs.contrast), first), ("cyclegan", list(faint), second)]

    figure = build_pairs_figure(pairs, shown, k=3)

    axes = np.asarray(figure.axes).reshape(3, -1)
    assert axes.shape == (3, 7)
    assert [ax.get_title() for ax in axes[0]] == [
        "input", "cas-gan", "cyclegan", "true contrast",
        "cas-gan: vessels", "cyclegan: vessels", "truth: vessels",
    ]  # fmt: skip
    row = 1  # frame 2 of 0..3 (shown_frames(4, 3) == [0, 2, 3])
    np.testing.assert_array_equal(axes[row, 2].get_images()[0].get_array(), faint[2])
    scores = second.table.iloc[2]
    assert axes[row, 5].get_xlabel() == (
        f"Dice {scores['translation_dice']:.2f}  clDice {scores['translation_cl_dice']:.2f}"
    )
    assert axes[row, 6].get_xlabel().startswith(f"Dice {first.table['truth_dice'][2]:.2f}")
    assert all(ax.get_xlabel() == "" for ax in axes[row, :4])
    single = build_pairs_figure(pairs, shown[:1], k=3)
    assert len(single.axes) == 3 * 5  # one translation: today's five columns
    width = figure.get_size_inches()[0]
    assert width > single.get_size_inches()[0]


def test_the_examples_figure_has_a_row_per_translation_above_the_real_ones():
    pairs = drawn_pairs(n=5)
    translated = [("cas-gan", list(pairs.contrast)), ("cyclegan", list(pairs.noncontrast))]

    figure = build_examples_figure(translated, list(pairs.contrast[:3]), k=4)

    axes = np.asarray(figure.axes).reshape(3, 4)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["cas-gan", "cyclegan", "real"]
    assert [len(ax.get_images()) for ax in axes[2]] == [1, 1, 1, 0]


# --- the command line -----------------------------------------------------------------------------


def test_cli_needs_exactly_one_of_fake_and_translated(tmp_path):
    base = ["evaluate", "--real", str(tmp_path), "--out", str(tmp_path / "e")]

    both = runner.invoke(app, [*base, "--fake", str(tmp_path), "--translated", str(tmp_path)])
    neither = runner.invoke(app, base)
    view = runner.invoke(app, [*base, "--translated", str(tmp_path), "--view-model", "v"])
    missing = runner.invoke(app, [*base, "--translated", str(tmp_path)])
    steps = runner.invoke(app, [*base, "--translated", str(tmp_path), "--view-steps", "5",
                                "--max-train", "9"])  # fmt: skip
    compare = runner.invoke(app, [*base, "--fake", str(tmp_path), "--compare", str(tmp_path)])
    segmenter = runner.invoke(app, [*base, "--fake", str(tmp_path), "--segmenter", "s"])

    for result in (both, neither, view, missing, steps, compare, segmenter):
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "exactly one of --fake" in both.output and "exactly one of --fake" in neither.output
    assert "--fake only" in view.output
    assert "--view-steps, --max-train: for --fake only" in steps.output
    assert "no translations.csv" in missing.output
    assert "--compare: for --translated only" in compare.output
    assert "--segmenter: for --translated only" in segmenter.output


def test_real_features_are_cached_only_in_a_writable_folder(tmp_path):
    assert translation._cache_dir(tmp_path) == tmp_path / "cache" / "features"
    assert translation._cache_dir(tmp_path / "nowhere") is None


def test_cli_prints_the_summary(loaders, real_dir, tmp_path):
    pairs, _ = loaders
    folder = write_translations(tmp_path / "t", pairs.contrast[:2])

    result = runner.invoke(app, [
        "evaluate", "--translated", str(folder), "--real", str(real_dir),
        "--out", str(tmp_path / "e"), "--bootstrap", "5", "--device", "cpu",
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "truth (ceiling)" in result.output and "cl_dice" in result.output
    assert "report:" in result.output and "warning: real angiograms: 8 samples" in result.output
    assert "only 2 paired frames" in result.output


def test_cli_prints_a_row_per_compared_translation(loaders, block_features, tmp_path):
    pairs, _ = loaders
    folder = write_translations(tmp_path / "t", pairs.contrast[:3], method="cas-gan")
    baseline = write_translations(tmp_path / "b", pairs.noncontrast[:3], method="cyclegan")

    result = runner.invoke(app, [
        "evaluate", "--translated", str(folder), "--compare", str(baseline),
        "--real", str(tmp_path), "--out", str(tmp_path / "e"), "--bootstrap", "5",
        "--device", "cpu",
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()]
    columns = ["method", "n", "n_real", "fid", "kid", "mmd_x10", "dice", "cl_dice", "psnr", "ssim"]
    header = next(i for i, line in enumerate(lines) if line[-10:] == columns)  # after "set"
    assert [line[:2] for line in lines[header + 2 : header + 6]] == [
        ["translation", "cas-gan"], ["translation", "cyclegan"], ["truth", "(ceiling)"],
        ["input", "(no"],
    ]  # fmt: skip
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(metrics["compared"]) == ["cyclegan"] and (tmp_path / "e" / "pairs.png").exists()
