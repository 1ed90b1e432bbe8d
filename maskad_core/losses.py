"""The paper's training loss (eq. 4): L = λ1 (1 - SSIM) + λ2 L1 + λ3 LPIPS.

The paper does not give λ1, λ2, λ3. The defaults chosen here:

* ``DEFAULT_SSIM_WEIGHT = 0.1`` and ``DEFAULT_L1_WEIGHT = 1.0``: with equal weights the SSIM term
  dominates the gradient early on and holds the reconstruction at the image's mean colour for hundreds
  of steps; at a tenth of L1's weight the model learns structure at once and SSIM still shapes it
  (measured: ``maskad_core/study/recipe_log.yaml``, decision ``ssim_weight``).
* ``DEFAULT_LPIPS_WEIGHT = 0.1``: LPIPS is a deep-feature distance whose gradients pass through a
  frozen AlexNet; a small weight keeps it a perceptual regulariser rather than the main objective, and
  keeps runs with and without LPIPS (it is often unavailable offline, see below) close to each other.

SSIM comes from pytorch-msssim (Gaussian window, sigma 1.5, data_range 1). pytorch-msssim filters
without padding and needs every image side >= the window, so the window is chosen per input by
:func:`maskad_core.scoring.ssim_window_size`: the usual 11, or the largest odd size that fits a smaller image.

LPIPS comes from the ``lpips`` package (net='alex', version 0.1). Its linear calibration layers ship in
the wheel; the AlexNet trunk needs torchvision's ImageNet weights ``alexnet-owt-7be5be79.pth`` in
``torch.hub.get_dir()/checkpoints``. The trunk is built random (so that neither lpips nor torchvision
try to download anything) and those weights are then loaded from that file. How ``lpips`` decides:

* ``"off"``: never loaded; λ3 is ignored.
* ``"auto"``: used when the file is present. If it is absent, a download is attempted only when the
  environment variable ``MASKAD_LPIPS_DOWNLOAD=1`` is set (with a timeout), so that whether LPIPS is
  active never depends silently on the network at the time of a run. Otherwise training continues with
  λ3 = 0, one :class:`LPIPSUnavailableWarning` per process says why and how to enable it, and
  ``lpips_active`` is False with the reason in ``lpips_reason``.
* ``"required"``: like "auto", but raises :class:`LPIPSUnavailableError` naming the missing file.

AlexNet needs images of at least 32 px per side; smaller inputs are upsampled (bilinear) to 32 px
before LPIPS, so the tiny test configurations also run where the weights are present.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim
from torch import Tensor, nn

from maskad_core.scoring import SSIM_SIGMA, ssim_window_size

DEFAULT_SSIM_WEIGHT = 0.1
DEFAULT_L1_WEIGHT = 1.0
DEFAULT_LPIPS_WEIGHT = 0.1

LPIPS_MODES = ("auto", "required", "off")

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_WEIGHTS_URL = "https://download.pytorch.org/models/" + ALEXNET_WEIGHTS_FILE
ALEXNET_SHA256_PREFIX = "7be5be79"
DOWNLOAD_ENV_VAR = "MASKAD_LPIPS_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 30.0
LPIPS_MIN_SIDE = 32  # smallest side AlexNet's conv/pool stack accepts (31 px, rounded up)

_warned_lpips_unavailable = False


class LPIPSUnavailableError(RuntimeError):
    """LPIPS was required but its AlexNet weights could not be found or loaded."""


class LPIPSUnavailableWarning(UserWarning):
    """LPIPS is skipped (λ3 = 0) because its AlexNet weights are unavailable."""


def alexnet_weights_path() -> Path:
    """Where torchvision (and so LPIPS) expects the ImageNet AlexNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE


def _download_alexnet_weights(destination: Path, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch the weights to ``destination``, checking torchvision's hash prefix; raises on failure."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(ALEXNET_WEIGHTS_URL, timeout=timeout_s) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
    if not digest.hexdigest().startswith(ALEXNET_SHA256_PREFIX):
        tmp_path.unlink(missing_ok=True)
        raise OSError(f"downloaded {ALEXNET_WEIGHTS_URL} has the wrong SHA-256")
    shutil.move(str(tmp_path), destination)


def _alexnet_state_dict() -> dict[str, Tensor]:
    """The AlexNet weights from the hub folder (downloaded first if allowed); raises OSError if absent."""
    path = alexnet_weights_path()
    if not path.is_file():
        if os.environ.get(DOWNLOAD_ENV_VAR, "") != "1":
            raise OSError(
                f"AlexNet weights not found at {path} (downloads are off; set {DOWNLOAD_ENV_VAR}=1 "
                "to try one)"
            )
        try:
            _download_alexnet_weights(path)
        except Exception as error:
            raise OSError(
                f"AlexNet weights not found at {path} and download from {ALEXNET_WEIGHTS_URL} "
                f"failed: {error}"
            ) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise OSError(f"could not read AlexNet weights {path}: {error}") from error


def lpips_random_trunk() -> nn.Module:
    """LPIPS(alex, v0.1) with its shipped calibration layers and a random AlexNet trunk; downloads
    nothing and prints nothing."""
    import lpips  # imported lazily: only needed when LPIPS is used

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # lpips passes torchvision's deprecated `pretrained=` flag; the trunk is built random here.
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)


def build_lpips() -> nn.Module:
    """An LPIPS(alex, v0.1) module with ImageNet AlexNet trunk, frozen and in eval mode.

    Raises OSError when the AlexNet weights are unavailable. Prints nothing.
    """
    state = _alexnet_state_dict()
    metric = lpips_random_trunk()
    # lpips names the trunk's layers slice<k>.<index in alexnet.features>.<param>.
    trunk = {}
    for name in metric.net.state_dict():
        _, index, param = name.split(".")
        source = f"features.{index}.{param}"
        if source not in state:
            raise OSError(f"AlexNet weights {alexnet_weights_path()} lack {source}")
        trunk[name] = state[source]
    try:
        metric.net.load_state_dict(trunk, strict=True)
    except RuntimeError as error:
        raise OSError(f"AlexNet weights {alexnet_weights_path()} do not fit: {error}") from error
    metric.requires_grad_(False)
    return metric.eval()


class ReconstructionLoss(nn.Module):
    """λ1 (1 - SSIM) + λ2 L1 + λ3 LPIPS between a reconstruction and its target (paper eq. 4).

    Inputs are (B, C, H, W) images in [0, 1]. ``forward`` returns the weighted total (a scalar tensor
    with gradient) and the unweighted components as detached scalar tensors on the images' device:
    {"ssim": 1 - SSIM, "l1", "lpips", "total"}; "lpips" is 0 while LPIPS is inactive. The LPIPS network is frozen, always in eval mode and
    holds no trainable parameters, so the model's optimiser never sees it. See the module docstring
    for the λ defaults and the ``lpips`` modes.
    """

    def __init__(self, ssim_weight: float = DEFAULT_SSIM_WEIGHT, l1_weight: float = DEFAULT_L1_WEIGHT,
                 lpips_weight: float = DEFAULT_LPIPS_WEIGHT, lpips: str = "auto"):
        super().__init__()
        if lpips not in LPIPS_MODES:
            raise ValueError(f"lpips must be one of {LPIPS_MODES}, got {lpips!r}")
        for name, value in (("ssim_weight", ssim_weight), ("l1_weight", l1_weight),
                            ("lpips_weight", lpips_weight)):
            if not (float(value) >= 0.0 and float(value) < float("inf")):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self.ssim_weight = float(ssim_weight)
        self.l1_weight = float(l1_weight)
        self.lpips_weight = float(lpips_weight)
        self.lpips_mode = lpips
        self.lpips_net: nn.Module | None = None
        self.lpips_active = False
        self.lpips_reason = ""
        if lpips == "off":
            self.lpips_reason = "LPIPS switched off (lpips='off')"
            return
        try:
            self.lpips_net = build_lpips()
        except OSError as error:
            self.lpips_reason = str(error)
            if lpips == "required":
                raise LPIPSUnavailableError(
                    f"LPIPS required but unavailable: {error}. Put torchvision's ImageNet AlexNet "
                    "weights there, or use lpips='auto' or 'off'."
                ) from error
            _warn_lpips_unavailable(self.lpips_reason)
            return
        self.lpips_active = True

    def train(self, mode: bool = True) -> ReconstructionLoss:
        super().train(mode)
        if self.lpips_net is not None:
            self.lpips_net.eval()  # keep the calibration layers' dropout off
        return self

    def forward(self, recon: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if recon.shape != target.shape or recon.ndim != 4:
            raise ValueError(
                f"recon and target must both be (B, C, H, W) of one shape, got "
                f"{tuple(recon.shape)} and {tuple(target.shape)}"
            )
        window = ssim_window_size(recon.shape[-2], recon.shape[-1])
        ssim_loss = 1.0 - ssim(recon, target, data_range=1.0, size_average=True,
                               win_size=window, win_sigma=SSIM_SIGMA)
        l1_loss = (recon - target).abs().mean()
        total = self.ssim_weight * ssim_loss + self.l1_weight * l1_loss
        lpips_loss = torch.zeros((), device=recon.device)
        if self.lpips_active:
            lpips_loss = self._lpips(recon, target)
            total = total + self.lpips_weight * lpips_loss
        # detached tensors, not floats: reading a value would make the host wait for the device
        components = {"ssim": ssim_loss.detach(), "l1": l1_loss.detach(), "lpips": lpips_loss.detach(),
                      "total": total.detach()}
        return total, components

    def _lpips(self, recon: Tensor, target: Tensor) -> Tensor:
        if recon.shape[1] != 3:
            raise ValueError(f"LPIPS (AlexNet) needs 3-channel images, got {recon.shape[1]} channels")
        height, width = recon.shape[-2:]
        if min(height, width) < LPIPS_MIN_SIDE:
            scale = LPIPS_MIN_SIDE / min(height, width)
            size = (max(LPIPS_MIN_SIDE, round(height * scale)), max(LPIPS_MIN_SIDE, round(width * scale)))
            recon = F.interpolate(recon, size=size, mode="bilinear", align_corners=False)
            target = F.interpolate(target, size=size, mode="bilinear", align_corners=False)
        # normalize=True maps [0, 1] to LPIPS's expected [-1, 1].
        return self.lpips_net(recon, target, normalize=True).mean()


def _warn_lpips_unavailable(reason: str) -> None:
    global _warned_lpips_unavailable
    if _warned_lpips_unavailable:
        return
    _warned_lpips_unavailable = True
    warnings.warn(
        f"LPIPS disabled, training with lpips_weight = 0: {reason}. To enable it, put torchvision's "
        f"ImageNet AlexNet weights ({ALEXNET_WEIGHTS_FILE}) at {alexnet_weights_path()}, or set "
        f"{DOWNLOAD_ENV_VAR}=1 on a machine with network access.",
        LPIPSUnavailableWarning,
        stacklevel=3,
    )
