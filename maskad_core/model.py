"""The masked autoencoder with complementary views (Hu, Xiao, Kang 2024, Sec. 1.2).

A ViT encoder sees only the visible patches of one view; a lighter decoder fills in mask tokens and
predicts every patch. All views of a batch are folded into the batch dimension and go through one
forward pass; views with fewer visible patches are padded, and an attention mask keeps padding out.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn


def sincos_pos_embed(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine positional embedding, shape (grid_size**2, dim), row-major patches."""
    if dim % 4:
        raise ValueError(f"embedding width must be a multiple of 4 for 2-D sin-cos, got {dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class MaskedAutoencoder(nn.Module):
    """ViT masked autoencoder; ``depth``/``decoder_depth`` are the ExDy of the paper's Table 2."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 2,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 4,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        pixel_mean: tuple[float, ...] | None = None,
        pixel_std: tuple[float, ...] | None = None,
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(
                f"img_size={img_size} is not a multiple of patch_size={patch_size}; "
                f"use e.g. img_size={max(1, img_size // patch_size) * patch_size}"
            )
        for name, width, heads in (
            ("embed_dim", embed_dim, num_heads),
            ("decoder_embed_dim", decoder_embed_dim, decoder_num_heads),
        ):
            if width % heads:
                raise ValueError(f"{name}={width} is not divisible by its head count {heads}")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        # Inputs are standardised and predictions mapped back, so the model works in [0, 1] pixels
        # outside but sees unit-scale content inside: raw [0, 1] pixels vary so little that the
        # positional embedding drowns them and training sits long at the mean colour (recipe log).
        mean = torch.tensor(pixel_mean if pixel_mean is not None else (0.0,) * in_chans)
        std = torch.tensor(pixel_std if pixel_std is not None else (1.0,) * in_chans)
        if mean.numel() != in_chans or std.numel() != in_chans or bool((std <= 0).any()):
            raise ValueError(f"pixel_mean and pixel_std need {in_chans} values (std > 0), got "
                             f"{pixel_mean} and {pixel_std}")
        self.register_buffer("pixel_mean", mean.view(1, in_chans, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, in_chans, 1, 1), persistent=False)
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.register_buffer("pos_embed", sincos_pos_embed(embed_dim, self.grid_size), persistent=False)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(decoder_embed_dim))
        self.register_buffer(
            "decoder_pos_embed", sincos_pos_embed(decoder_embed_dim, self.grid_size), persistent=False
        )
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, qkv_bias=True)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # the patch projection is a linear map of the flattened patch, so initialise it like one
        proj = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)

    # -- shapes -------------------------------------------------------------------------------
    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order."""
        b, c = images.shape[:2]
        p, g = self.patch_size, self.grid_size
        x = images.reshape(b, c, g, p, g, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W)."""
        b = patches.shape[0]
        p, g, c = self.patch_size, self.grid_size, self.in_chans
        x = patches.reshape(b, g, g, p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)

    def patch_to_pixel_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """(..., L) patch mask -> (..., 1, H, W) pixel mask of the same dtype."""
        p, g = self.patch_size, self.grid_size
        lead = masks.shape[:-1]
        grid = masks.reshape(*lead, g, 1, g, 1)
        return grid.expand(*lead, g, p, g, p).reshape(*lead, 1, g * p, g * p)

    def _check_inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
        b, c, h, w = images.shape
        if c != self.in_chans:
            raise ValueError(f"images have {c} channels but the model was built for in_chans={self.in_chans}")
        if (h, w) != (self.img_size, self.img_size):
            raise ValueError(f"images are {h}x{w} but the model was built for img_size={self.img_size}")
        if masks.dtype != torch.bool:
            raise ValueError(f"masks must be a bool tensor (True = masked), got dtype {masks.dtype}")
        if masks.ndim == 2:
            masks = masks.unsqueeze(0).expand(b, -1, -1)
        if masks.ndim != 3 or masks.shape[0] != b or masks.shape[2] != self.num_patches:
            raise ValueError(
                f"masks must have shape (n, {self.num_patches}) or ({b}, n, {self.num_patches}), "
                f"got {tuple(masks.shape)}"
            )
        if bool(masks.all(dim=-1).any()):
            raise ValueError("every view needs at least one visible (False) patch; a mask hides all patches")
        return masks.to(images.device, non_blocking=True)  # pinned masks: no wait for the device

    # -- the model ------------------------------------------------------------------------------
    def predict_views(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Predict every patch of every view: (B, C, H, W), masks (n, L) or (B, n, L) -> (B, n, C, H, W).

        Each view's encoder sees only its own visible patches; the views never attend to each other.
        """
        return self._predict_views(images, self._check_inputs(images, masks))

    def _encode(self, images: torch.Tensor, masks: torch.Tensor):
        """Each view's visible tokens through the encoder: (tokens (B*n, k, D) after the norm,
        their patch indices (B, n, k), which of the k slots are tokens (B*n, k))."""
        b, n, length = masks.shape
        normalised = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        tokens = self.patch_embed(normalised) + self.pos_embed  # (B, L, D)

        visible = ~masks
        counts = visible.sum(-1)  # (B, n)
        k = int(counts.max())
        # visible patches first, in patch order; the first k indices are each view's tokens (+ padding)
        order = torch.argsort(masks.to(torch.uint8), dim=-1, stable=True)[..., :k]  # (B, n, k)
        x = torch.gather(tokens, 1, order.reshape(b, n * k, 1).expand(-1, -1, tokens.shape[-1]))
        x = x.reshape(b * n, k, -1)
        is_token = torch.arange(k, device=images.device) < counts.reshape(b * n, 1)  # (B*n, k)
        attn_mask = None if bool(is_token.all()) else is_token[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.norm(x), order, is_token

    def encode_patches(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """(B, L, D): every patch's encoder token, averaged over the views in which it is visible
        (with complementary masks, the one view that shows it); zero for a patch no view shows."""
        masks = self._check_inputs(images, masks)
        x, order, is_token = self._encode(images, masks)
        b, n, length = masks.shape
        weights = is_token.to(x.dtype).unsqueeze(-1)
        index = order.reshape(b, n * order.shape[-1], 1).expand(-1, -1, x.shape[-1])
        total = torch.zeros(b, length, x.shape[-1], dtype=x.dtype, device=x.device)
        total = total.scatter_add(1, index, (x * weights).reshape(b, -1, x.shape[-1]))
        count = torch.zeros(b, length, 1, dtype=x.dtype, device=x.device)
        count = count.scatter_add(1, index[..., :1], weights.reshape(b, -1, 1))
        return total / count.clamp(min=1)

    def _predict_views(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        b, n, length = masks.shape
        x, order, is_token = self._encode(images, masks)
        k = order.shape[-1]
        x = self.decoder_embed(x)

        # scatter the encoded tokens into a full sequence of mask tokens; padding becomes mask tokens
        x = torch.where(is_token.unsqueeze(-1), x, self.mask_token.to(x.dtype))
        full = self.mask_token.to(x.dtype).expand(b * n, length, -1)
        full = full.scatter(1, order.reshape(b * n, k, 1).expand(-1, -1, x.shape[-1]), x)
        x = full + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        patches = self.decoder_pred(self.decoder_norm(x))  # (B*n, L, p*p*C)
        views = self.unpatchify(patches) * self.pixel_std.to(patches.dtype) + self.pixel_mean.to(patches.dtype)
        return views.reshape(b, n, self.in_chans, self.img_size, self.img_size)

    def combine_views(self, images: torch.Tensor, views: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Average each patch over the views in which it was masked (eq. 3); unmasked patches keep input.

        With complementary masks every patch is masked in n - 1 views, so this is exactly
        y = 1/(n - 1) * sum_i M_i * y_i.
        """
        return self._combine_views(images, views, self._check_inputs(images, masks))

    def _combine_views(self, images: torch.Tensor, views: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        weights = self.patch_to_pixel_mask(masks).to(views.dtype)  # (B, n, 1, H, W)
        count = weights.sum(1)
        total = (views * weights).sum(1)
        return torch.where(count > 0, total / count.clamp(min=1), images.to(views.dtype))

    def reconstruct(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The composite reconstruction y of eq. 3 (with one random mask: the vanilla MAE composite)."""
        masks = self._check_inputs(images, masks)  # once: the check syncs with the device
        return self._combine_views(images, self._predict_views(images, masks), masks)

    forward = reconstruct

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, E{len(self.blocks)}"
            f"D{len(self.decoder_blocks)}"
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Per-channel (mean, std) the model standardises its input with; "none" keeps raw [0, 1] pixels.
INPUT_NORMS = {"none": (None, None),
               "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def build_model(config) -> MaskedAutoencoder:
    """The model a TrainConfig describes (read by attribute: this module does not import config)."""
    pixel_mean, pixel_std = INPUT_NORMS[config.input_norm]
    return MaskedAutoencoder(
        pixel_mean=pixel_mean, pixel_std=pixel_std,
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, decoder_embed_dim=config.decoder_embed_dim,
        decoder_depth=config.decoder_depth, decoder_num_heads=config.decoder_num_heads,
        mlp_ratio=config.mlp_ratio,
    )
