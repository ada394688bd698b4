"""Controllability: does a sample show the condition its prompt asked for?

A view classifier trained on real frames (`training.view`) labels each sample "AC A" ... "PC B"
or "Others"; condition accuracy is, per prompted condition, the share of samples labelled as
what was asked. Its penultimate layer is also a DSA-trained feature space in which the Frechet
distance between real and synthetic frames is measured (the paper's §3 asks for such a judge
beside ImageNet's Inception).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from angiosynth.conditions import CONDITIONS, VIEWS
from angiosynth.data.frames import INPUT_SIZE, resize_frames
from angiosynth.models.classifiers import ViewClassifier, predicted_views


def classify(
    model: ViewClassifier,
    images: np.ndarray,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate features of frames at their native size.

    Args:
        model: the view classifier (eval mode).
        images: (N, H, W) float in [0, 1].

    Returns:
        (N, 3) float64 logits, (N, 512) float64 features.
    """
    frames = resize_frames(torch.from_numpy(np.asarray(images, np.float32))[:, None], INPUT_SIZE)
    loader = torch.utils.data.DataLoader(TensorDataset(frames), batch_size=batch_size)
    logits, features = [], []
    with torch.no_grad():
        for (batch,) in loader:
            embedded = model.embed(batch.to(device))
            features.append(embedded.double().cpu().numpy())
            logits.append(model.head(embedded).double().cpu().numpy())
    if not logits:
        return np.zeros((0, 3)), np.zeros((0, model.head.in_features))
    return np.concatenate(logits), np.concatenate(features)


def confusion(requested: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Counts of prompted condition (rows, CONDITIONS present) x predicted view (VIEWS)."""
    rows = [c for c in CONDITIONS if (requested == c).any()]
    table = pd.crosstab(
        pd.Categorical(requested, rows), pd.Categorical(predicted, VIEWS), dropna=False
    )
    table.index.name, table.columns.name = "prompted", "classified"
    return table


def condition_accuracy(requested: np.ndarray, logits: np.ndarray) -> dict:
    """Per prompted condition and overall, the share of samples classified as asked.

    Args:
        requested: (N,) prompted conditions.
        logits: (N, 3) view-classifier logits of the samples.

    Returns:
        {"overall", "per_condition": {condition: share}, "confusion": {row: {col: count}}}.
    """
    requested = np.asarray(requested, dtype=object)
    predicted = predicted_views(logits)
    right = predicted == requested
    per_condition = {
        c: float(right[requested == c].mean()) for c in CONDITIONS if (requested == c).any()
    }
    return {
        "overall": float(right.mean()) if len(right) else None,
        "per_condition": per_condition,
        "confusion": confusion(requested, predicted).to_dict(orient="index"),
    }
