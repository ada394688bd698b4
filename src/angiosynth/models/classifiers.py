"""Frame classifiers: the arterial-phase classifier and the view classifier.

The arterial-phase classifier of the paper (§2.2, §4.2) is a ResNet-18 trained from scratch on
single-channel 128 x 128 DSA frames in [0, 1], with one logit out (arterial vs not).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models import resnet18

from angiosynth.runfiles import write_json_atomic

#: Side of the classifier's square input frames (paper §4.2).
PHASE_INPUT_SIZE = 128

#: What `phase_classifier` builds, as recorded in a model's config.json.
PHASE_ARCHITECTURE = {
    "name": "resnet18",
    "library": "torchvision",
    "weights": None,
    "in_channels": 1,
    "num_classes": 1,
    "input_size": PHASE_INPUT_SIZE,
}


def phase_classifier() -> nn.Module:
    """ResNet-18 (torchvision, random init) with a 1-channel stem and a single logit.

    The model maps (N, 1, H, W) frames in [0, 1] to (N, 1) logits; H = W = 128 in the paper.
    The stem keeps torchvision's 7x7 stride-2 convolution, only with one input channel.
    """
    model = resnet18(weights=None, num_classes=1)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


# --- view classifier (evaluation: does a sample show the condition its prompt asked for?) -----

#: The view classifier's binary heads, each (name, value of logit < 0, value of logit > 0).
VIEW_HEADS = (
    ("circulation", "anterior", "posterior"),
    ("plane", "A", "B"),
    ("canonical", "other angles", "canonical angles"),
)
VIEW_ARCHITECTURE = {
    "name": "resnet18-view",
    "library": "torchvision",
    "weights": None,
    "in_channels": 1,
    "heads": [h[0] for h in VIEW_HEADS],
    "input_size": PHASE_INPUT_SIZE,
}
EMBEDDING_DIM = 512


class ViewClassifier(nn.Module):
    """ResNet-18 (random init, 1 input channel) with three binary heads: posterior circulation,
    plane B, canonical angles (within +-5 degrees of the plane's 0/0 or -90/0).

    `forward` maps (N, 1, 128, 128) frames in [0, 1] to (N, 3) logits; `embed` gives the
    (N, 512) penultimate features (the domain feature space of `evaluation`).
    """

    def __init__(self) -> None:
        super().__init__()
        backbone = resnet18(weights=None)
        backbone.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.head = nn.Linear(EMBEDDING_DIM, len(VIEW_HEADS))

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, 512) features after global average pooling."""
        return self.backbone(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, 3) logits."""
        return self.head(self.embed(frames))


def view_targets(circulation, plane, view) -> np.ndarray:
    """(N, 3) float32 0/1 targets of the heads from a table's columns (sequences of N)."""
    return np.stack(
        [
            np.asarray(circulation) == "posterior",
            np.asarray(plane) == "B",
            np.asarray(view) != "Others",
        ],
        axis=1,
    ).astype(np.float32)


def predicted_views(logits: np.ndarray) -> np.ndarray:
    """(N, 3) logits -> (N,) view labels: "AC A" ... "PC B" when the angles are canonical, else
    "Others"."""
    posterior, plane_b, canonical = (np.asarray(logits) > 0).T
    circulation = np.where(posterior, "PC", "AC")
    plane = np.where(plane_b, "B", "A")
    named = np.char.add(np.char.add(circulation, " "), plane)
    return np.where(canonical, named, "Others").astype(object)


def predict_logits(model: nn.Module, frames, device, batch_size: int = 64) -> np.ndarray:
    """(N, 3) float64 logits of the frames served by `frames` (a Dataset of (image, target))."""
    from torch.utils.data import DataLoader

    loader = DataLoader(frames, batch_size=batch_size, shuffle=False)
    model.eval()
    out = []
    with torch.no_grad():
        for images, _ in loader:
            out.append(model(images.to(device)).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(VIEW_HEADS)))


def view_accuracy(logits: np.ndarray, targets: np.ndarray, views) -> dict:
    """Per-head accuracy and view accuracy (all three heads right) of (N, 3) logits."""
    right = (logits > 0) == (targets > 0.5)
    heads = {name: float(right[:, i].mean()) for i, (name, _, _) in enumerate(VIEW_HEADS)}
    view = float((predicted_views(logits) == np.asarray(views, dtype=object)).mean())
    return {"n": len(targets), "view": view, **heads}


class ClassifierFileError(ValueError):
    """A classifier directory that is missing files or holds another model."""


def save_classifier(model: nn.Module, out: Path, config: dict) -> None:
    """Writes OUT/model.safetensors and OUT/config.json (with `architecture`), atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / ".model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    write_json_atomic(out / "config.json", config)


def load_view_classifier(model_dir: Path, device: str | torch.device = "cpu"):
    """Loads a view classifier directory; returns (model in eval mode, config).

    Raises:
        ClassifierFileError: missing files, another architecture, or weights that do not fit.
    """
    model_dir = Path(model_dir)
    for name in ("config.json", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise ClassifierFileError(f"{model_dir}: not a view classifier (no {name})")
    config = json.loads((model_dir / "config.json").read_text())
    name = config.get("architecture", {}).get("name")
    if name != VIEW_ARCHITECTURE["name"]:
        raise ClassifierFileError(f"{model_dir}: architecture {name!r} is not a view classifier")
    model = ViewClassifier()
    try:
        model.load_state_dict(load_file(model_dir / "model.safetensors"))
    except (SafetensorError, RuntimeError) as err:
        raise ClassifierFileError(f"{model_dir}: weights do not load ({err})") from err
    return model.to(device).eval(), config
