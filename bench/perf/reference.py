"""A straightforward reference: the same model, with the n views run one by one in a Python loop.

It shares the weights of a :class:`~maskad_core.model.MaskedAutoencoder` and re-implements only
``predict_views``, without padding, gathers or attention masks: each view indexes its visible tokens,
runs the encoder on them, writes them into a sequence of mask tokens and runs the decoder. The
benchmark checks that it gives the batched model's output and times the two against each other.
"""

from __future__ import annotations

import torch
from torch import nn

from maskad_core.model import MaskedAutoencoder


class PerViewLoopReference(nn.Module):
    """``predict_views``/``reconstruct`` of ``model``, looping over views (and over images when the
    masks differ per image)."""

    def __init__(self, model: MaskedAutoencoder):
        super().__init__()
        self.model = model

    def predict_views(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        model = self.model
        if masks.ndim == 3:  # one set of masks per image: visible counts may differ, so one at a time
            if masks.shape[0] != images.shape[0]:
                raise ValueError(
                    f"per-image masks must have shape ({images.shape[0]}, n, L), got {tuple(masks.shape)}"
                )
            return torch.cat(
                [self.predict_views(images[i : i + 1], masks[i]) for i in range(images.shape[0])]
            )
        if masks.ndim != 2 or masks.dtype != torch.bool:
            raise ValueError(f"masks must be a bool tensor (n, L) or (B, n, L), got {masks.dtype} "
                             f"{tuple(masks.shape)}")
        masks = masks.to(images.device)
        batch, length = images.shape[0], model.num_patches
        tokens = model.patch_embed(images) + model.pos_embed
        views = []
        for mask in masks:
            visible = torch.nonzero(~mask).squeeze(1)
            x = tokens[:, visible]
            for block in model.blocks:
                x = block(x)
            x = model.decoder_embed(model.norm(x))
            full = model.mask_token.to(x.dtype).expand(batch, length, -1).clone()
            full[:, visible] = x
            x = full + model.decoder_pos_embed
            for block in model.decoder_blocks:
                x = block(x)
            views.append(model.unpatchify(model.decoder_pred(model.decoder_norm(x))))
        return torch.stack(views, dim=1)

    def combine_views(self, images, views, masks):
        return self.model.combine_views(images, views, masks)

    def reconstruct(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.model.combine_views(images, self.predict_views(images, masks), masks)
