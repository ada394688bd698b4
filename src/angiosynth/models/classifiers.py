"""Frame classifiers: the arterial-phase classifier and the view classifier, and their model
directories.

The arterial-phase classifier of the paper (§2.2, §4.2) is a ResNet-18 trained from scratch on
single-channel 128 x 128 DSA frames in [0, 1], with one logit out (arterial vs not). A model
directory (`save_classifier`, `load_classifier`) holds MODEL/model.safetensors and
MODEL/config.json, whose `architecture.name` says which classifier it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader
from torchvision.models import resnet18

from angiosynth.data.frames import INPUT_SIZE
from angiosynth.errors import AngiosynthError
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import (
    MODEL_CONFIG_FILE,
    MODEL_FILE,
    save_tensors_atomic,
    write_json_atomic,
)

#: What `phase_classifier` builds, as recorded in a model's config.json.
PHASE_ARCHITECTURE = {
    "name": "resnet18",
    "library": "torchvision",
    "weights": None,
    "in_channels": 1,
    "num_classes": 1,
    "input_size": INPUT_SIZE,
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
    "input_size": INPUT_SIZE,
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


def predict_logits(
    model: nn.Module,
    frames,
    device,
    batch_size: int = 64,
    workers: int = 0,
    context: Callable = nullcontext,
    channels_last: bool = False,
    progress: Progress | None = None,
) -> np.ndarray:
    """(N, K) float64 logits of the frames served by `frames` (a Dataset of (image, target)).

    Args:
        model: the classifier (set to eval mode here).
        context: entered around each forward pass (e.g. bf16 autocast).
        channels_last: feed the images in channels-last memory format (as the model runs).
        progress: wraps the batches.
    """
    loader = DataLoader(frames, batch_size=batch_size, shuffle=False, num_workers=workers)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.eval()
    out = []
    with torch.no_grad():
        for images, _ in tracked(loader, len(loader), "score", progress):
            with context():
                logits = model(images.to(device, memory_format=memory_format))
            out.append(logits.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1))


def view_accuracy(logits: np.ndarray, targets: np.ndarray, views) -> dict:
    """Per-head accuracy and view accuracy (all three heads right) of (N, 3) logits."""
    right = (logits > 0) == (targets > 0.5)
    heads = {name: float(right[:, i].mean()) for i, (name, _, _) in enumerate(VIEW_HEADS)}
    view = float((predicted_views(logits) == np.asarray(views, dtype=object)).mean())
    return {"n": len(targets), "view": view, **heads}


class ClassifierFileError(AngiosynthError, ValueError):
    """A classifier directory that is missing files or holds another model."""


#: Each classifier's builder, by the architecture name its config.json records.
BUILDERS: dict[str, Callable[[], nn.Module]] = {
    PHASE_ARCHITECTURE["name"]: phase_classifier,
    VIEW_ARCHITECTURE["name"]: ViewClassifier,
}


def save_classifier(model: nn.Module, out: Path, config: dict) -> None:
    """Writes OUT/model.safetensors and OUT/config.json (with `architecture`), atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = config["architecture"]["name"]
    save_tensors_atomic(model.state_dict(), out / MODEL_FILE,
                        metadata={"format": "pt", "architecture": name})  # fmt: skip
    write_json_atomic(out / MODEL_CONFIG_FILE, config)


def load_classifier(
    model_dir: Path, architecture: dict, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Loads a classifier directory of the given architecture; returns (model in eval mode on
    `device`, config).

    Raises:
        ClassifierFileError: missing files, another architecture, or weights that do not fit.
    """
    model_dir = Path(model_dir)
    expected = architecture["name"]
    for name in (MODEL_CONFIG_FILE, MODEL_FILE):
        if not (model_dir / name).is_file():
            raise ClassifierFileError(f"{model_dir}: not a {expected} classifier (no {name})")
    try:
        config = json.loads((model_dir / MODEL_CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClassifierFileError(f"{model_dir / MODEL_CONFIG_FILE}: unreadable ({err})") from err
    name = config.get("architecture", {}).get("name") if isinstance(config, dict) else None
    if name != expected:
        raise ClassifierFileError(
            f"{model_dir / MODEL_CONFIG_FILE}: architecture {name!r} is not {expected}"
        )
    model = BUILDERS[name]()
    try:
        model.load_state_dict(load_file(model_dir / MODEL_FILE))
    except (SafetensorError, RuntimeError, OSError) as err:
        message = str(err).splitlines()[0]
        raise ClassifierFileError(
            f"{model_dir / MODEL_FILE}: weights do not load ({message})"
        ) from err
    return model.to(device).eval(), config


def load_view_classifier(model_dir: Path, device: str | torch.device = "cpu"):
    """`load_classifier` of a view classifier directory: (model in eval mode, config)."""
    return load_classifier(model_dir, VIEW_ARCHITECTURE, device)
