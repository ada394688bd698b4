"""The view classifier: heads, training, saving and loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from angiosynth.config import ViewTrainConfig
from angiosynth.models.classifiers import (
    ClassifierFileError,
    ViewClassifier,
    load_view_classifier,
    predicted_views,
    view_targets,
)
from angiosynth.training.view import train_view_classifier


def test_targets_and_predicted_views_round_trip():
    circulation = ["anterior", "posterior", "anterior", "posterior", "anterior"]
    plane = ["A", "A", "B", "B", "B"]
    view = ["AC A", "PC A", "AC B", "PC B", "Others"]

    targets = view_targets(circulation, plane, view)
    logits = np.where(targets > 0.5, 3.0, -3.0)

    assert targets.shape == (5, 3)
    assert list(predicted_views(logits)) == view


def test_embedding_and_logits_shapes():
    model = ViewClassifier().eval()

    with torch.no_grad():
        x = torch.rand(2, 1, 128, 128)
        assert model.embed(x).shape == (2, 512)
        assert model(x).shape == (2, 3)


@pytest.fixture(scope="module")
def trained(diffusion_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "model"
    options = ViewTrainConfig(min_steps=2, batch_size=8, source_size=32, seed=3)
    return out, train_view_classifier(diffusion_data.dataset, out, options), options


def test_training_writes_a_loadable_model_with_its_settings(trained):
    out, config, _ = trained

    model, loaded = load_view_classifier(out)

    assert loaded == json.loads(json.dumps(config))
    assert config["input"]["source_size"] == 32 and config["training"]["min_steps"] == 2
    assert set(config["holdout"]) >= {"view", "circulation", "plane", "canonical", "n"}
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r for r in log if "holdout" in r][-1]["holdout"] == config["holdout"]
    assert not model.training


def test_same_seed_same_weights(trained, diffusion_data, tmp_path):
    out, _, options = trained

    train_view_classifier(diffusion_data.dataset, tmp_path / "again", options)

    first, _ = load_view_classifier(out)
    second, _ = load_view_classifier(tmp_path / "again")
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loading_refuses_other_directories(tmp_path):
    with pytest.raises(ClassifierFileError, match="not a resnet18-view classifier"):
        load_view_classifier(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": {"name": "resnet18"}}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ClassifierFileError, match="is not resnet18-view"):
        load_view_classifier(tmp_path)
