"""Running a fully convolutional network on whole frames of any size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def run_on_frames(
    network: nn.Module,
    call: Callable[[torch.Tensor], torch.Tensor],
    frames: np.ndarray,
    multiple: int,
    batch_size: int = 8,
) -> np.ndarray:
    """`call` over batches of whole frames, in eval mode (the mode is restored after).

    Args:
        network: the network `call` runs (its parameters give the device).
        call: (n, 1, H', W') images in [-1, 1] -> (n, 1, H', W') maps in [0, 1].
        frames: (N, H, W) frames in [0, 1], any H and W.
        multiple: each frame is padded at the bottom and right to multiples of it (reflection,
            or replication for frames smaller than the padding) and cropped back.

    Returns:
        (N, H, W) float32 maps.
    """
    device = next(network.parameters()).device
    was_training = network.training
    network.eval()
    out = np.empty(frames.shape, dtype=np.float32)
    for start in range(0, len(frames), batch_size):
        chunk = np.ascontiguousarray(frames[start : start + batch_size], dtype=np.float32)
        images = torch.from_numpy(chunk)[:, None].to(device)
        h, w = images.shape[-2:]
        result = call(pad_to(images * 2 - 1, multiple))[..., :h, :w]
        out[start : start + len(chunk)] = result.float()[:, 0].cpu().numpy()
    network.train(was_training)
    return out


def pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(n, C, H, W) padded at the bottom and right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
