"""The paper's training loss (eq. 4): L = λ1 (1 - SSIM) + λ2 L1 + λ3 LPIPS.

The paper does not give λ1, λ2, λ3. The defaults chosen here:

* ``DEFAULT_SSIM_WEIGHT = 0.1`` and ``DEFAULT_L1_WEIGHT = 1.0``: with equal weights the SSIM term
  dominates the gradient early on and holds the reconstruction at the image's mean colour for hundreds
  of steps; at a tenth of L1's weight the model learns structure at once and SSIM still shapes it
  (measured: ``maskad_core/study/recipe_log.yaml``, decision ``ssim_weight``).
* ``DEFAULT_LPIPS_WEIGHT = 0.1``: LPIPS is a deep-feature distance whose gradients pass through a
  frozen AlexNet; a small weight keeps it a perceptual regulariser rather than the main objective, and
  keeps runs with and without LPIPS (it is often unavailable offline, see below) close to each other.

SSIM is pytorch-msssim's (Gaussian window, sigma 1.5, data_range 1), computed here by :func:`ssim_loss`
(equal to ``1 - pytorch_msssim.ssim`` within float rounding, tests/test_losses.py; several times faster
on the CPU: shifted multiply-adds instead of grouped convolutions, a hand-written gradient). It filters
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
        ssim_term = ssim_loss(recon, target, window)
        l1_loss = (recon - target).abs().mean()
        total = self.ssim_weight * ssim_term + self.l1_weight * l1_loss
        lpips_loss = torch.zeros((), device=recon.device)
        if self.lpips_active:
            lpips_loss = self._lpips(recon, target)
            total = total + self.lpips_weight * lpips_loss
        # detached tensors, not floats: reading a value would make the host wait for the device
        components = {"ssim": ssim_term.detach(), "l1": l1_loss.detach(), "lpips": lpips_loss.detach(),
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


# ------------------------------------------------------------------ SSIM, fast on the CPU
def _gaussian_taps(window: int, sigma: float) -> list[float]:
    """pytorch-msssim's 1-D window (built in float32, as it builds it), as Python floats."""
    coords = torch.arange(window, dtype=torch.float) - window // 2
    taps = torch.exp(-(coords**2) / (2 * sigma**2))
    return (taps / taps.sum()).tolist()


def _correlate(images: Tensor, taps: list[float], dim: int) -> Tensor:
    """'valid' correlation of ``images`` with ``taps`` along ``dim``, as shifted multiply-adds:
    for an 11-tap window this is several times faster on the CPU than a grouped convolution."""
    n = images.shape[dim] - len(taps) + 1
    out = images.narrow(dim, 0, n) * taps[0]
    for k in range(1, len(taps)):
        out.add_(images.narrow(dim, k, n), alpha=taps[k])
    return out


def _blur(images: Tensor, taps: list[float]) -> Tensor:
    """Separable 'valid' Gaussian blur of the last two dimensions (width, then height)."""
    return _correlate(_correlate(images, taps, -1), taps, -2)


def _blur_transposed(grads: Tensor, taps: list[float]) -> Tensor:
    """The adjoint of :func:`_blur`: the gradient it sends back to its input (a 'full' correlation
    with the reversed window)."""
    width = len(taps) - 1
    padded = F.pad(grads, (width, width, width, width))
    return _blur(padded, taps[::-1])


class _SSIMLoss(torch.autograd.Function):
    """1 - mean SSIM of (B, C, H, W) images, data range 1, Gaussian window: pytorch-msssim's
    ``1 - ssim(x, y, data_range=1, size_average=True)``, with the five blurred maps computed in one
    separable pass and the gradient written out (no autograd graph over a dozen full-size maps)."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, window: int, sigma: float) -> Tensor:
        taps = _gaussian_taps(window, sigma)
        maps = _blur(torch.stack([x, y, x * x, y * y, x * y]), taps)
        mu_x, mu_y, xx, yy, xy = maps.unbind(0)
        c1, c2 = 0.01**2, 0.03**2  # (K * data_range)^2, K = (0.01, 0.03), data range 1
        mu_xy = mu_x * mu_y
        d1 = mu_x * mu_x + mu_y * mu_y + c1
        d2 = (xx - mu_x * mu_x) + (yy - mu_y * mu_y) + c2
        luminance = (2 * mu_xy + c1) / d1
        structure = (2 * (xy - mu_xy) + c2) / d2
        ssim_map = luminance * structure
        ctx.save_for_backward(x, y, mu_x, mu_y, d1, d2, luminance, structure)
        ctx.taps = taps
        # pytorch-msssim's order: the mean per channel, then over the batch and channels
        return 1.0 - ssim_map.flatten(2).mean(-1).mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, mu_x, mu_y, d1, d2, luminance, structure = ctx.saved_tensors
        scale = -grad / mu_x.numel()  # the mean's 1/M, with the sign of 1 - SSIM
        a_over_d2 = luminance / d2
        common = (scale * 2) * a_over_d2  # d(map)/d(blur(x*y)), scaled
        g_square = -scale * structure * a_over_d2  # d/d(blur(x*x)) = d/d(blur(y*y)), scaled
        grads = [None, None]
        for index, (own, other, mu_own, mu_other) in enumerate(((x, y, mu_x, mu_y), (y, x, mu_y, mu_x))):
            if not ctx.needs_input_grad[index]:
                continue
            g_mu = (scale * 2) * (structure * (mu_other - luminance * mu_own) / d1
                                  + a_over_d2 * (structure * mu_own - mu_other))
            back = _blur_transposed(torch.stack([g_mu, g_square, common]), ctx.taps)
            grads[index] = back[0] + 2 * own * back[1] + other * back[2]
        return grads[0], grads[1], None, None


def ssim_loss(recon: Tensor, target: Tensor, window: int, sigma: float = SSIM_SIGMA) -> Tensor:
    """1 - SSIM (pytorch-msssim's, data range 1, mean over the batch) of (B, C, H, W) images."""
    return _SSIMLoss.apply(recon, target, int(window), float(sigma))


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
