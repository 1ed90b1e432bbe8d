"""The masked autoencoder: views are encoded apart, batched equals looped, eq. 3 is exact."""

import pytest
import torch

from maskad_core.masking import complementary_masks, random_masks
from maskad_core.model import MaskedAutoencoder, sincos_pos_embed


def tiny_model(**overrides) -> MaskedAutoencoder:
    torch.manual_seed(0)
    settings = dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
        decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
    )
    settings.update(overrides)
    return MaskedAutoencoder(**settings).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def pixel_masks(model, masks):
    return model.patch_to_pixel_mask(masks).float()


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.8, 0.9])
def test_predict_views_shape(images, ratio):
    model = tiny_model()
    masks = complementary_masks(model.num_patches, ratio)
    with torch.no_grad():
        views = model.predict_views(images, masks)
    assert views.shape == (3, masks.shape[0], 3, 32, 32)
    assert torch.isfinite(views).all()


@pytest.mark.parametrize("ratio", [0.75, 0.8, 0.9])
def test_batched_views_equal_a_loop_over_views(images, ratio):
    # 16 patches: n = 4 divides evenly, n = 5 and n = 10 give unequal visible counts (padding path)
    model = tiny_model()
    masks = complementary_masks(model.num_patches, ratio, torch.Generator().manual_seed(2))
    with torch.no_grad():
        batched = model.predict_views(images, masks)
        looped = torch.cat([model.predict_views(images, masks[i : i + 1]) for i in range(len(masks))], 1)
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)


def test_per_image_masks_equal_one_image_at_a_time(images):
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    masks = torch.stack([complementary_masks(model.num_patches, 0.8, gen) for _ in range(len(images))])
    with torch.no_grad():
        batched = model.predict_views(images, masks)
        single = torch.cat([model.predict_views(images[i : i + 1], masks[i]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_no_leakage_between_views(images):
    model = tiny_model()
    masks = complementary_masks(model.num_patches, 0.75, torch.Generator().manual_seed(3))
    j = 2
    only_in_view_j = pixel_masks(model, ~masks[j])  # (1, H, W): pixels visible only in view j
    changed = images + 5.0 * only_in_view_j
    with torch.no_grad():
        before = model.predict_views(images, masks)
        after = model.predict_views(changed, masks)
    others = [i for i in range(4) if i != j]
    torch.testing.assert_close(before[:, others], after[:, others], rtol=0, atol=1e-6)
    assert (before[:, j] - after[:, j]).abs().max() > 1e-3  # the check can fail: view j does change


def test_reconstruction_is_exactly_eq3(images):
    model = tiny_model()
    masks = complementary_masks(model.num_patches, 0.75)
    with torch.no_grad():
        views = model.predict_views(images, masks)
        composite = model.combine_views(images, views, masks)
        recon = model.reconstruct(images, masks)
    m = pixel_masks(model, masks)  # (n, 1, H, W)
    eq3 = (m * views).sum(1) / (len(masks) - 1)
    torch.testing.assert_close(composite, eq3, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(recon, eq3, rtol=1e-6, atol=1e-7)


def test_random_mask_composite_keeps_visible_pixels(images):
    model = tiny_model()
    masks = random_masks(model.num_patches, 0.75, torch.Generator().manual_seed(0))
    with torch.no_grad():
        views = model.predict_views(images, masks)
        recon = model.reconstruct(images, masks)
    masked = pixel_masks(model, masks[0]).bool().expand_as(images)
    assert torch.equal(recon[~masked], images[~masked])  # visible patches are copied through
    torch.testing.assert_close(recon[masked], views[:, 0][masked])


def test_patchify_round_trip_and_order():
    model = tiny_model()
    x = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(1, 3, 32, 32)
    patches = model.patchify(x)
    assert patches.shape == (1, 16, 8 * 8 * 3)
    assert torch.equal(model.unpatchify(patches), x)
    # patch 1 is the second patch of the first row: columns 8..15 of rows 0..7
    assert torch.equal(patches[0, 1].reshape(8, 8, 3).permute(2, 0, 1), x[0, :, :8, 8:16])


def test_pixel_mask_marks_the_right_patch():
    model = tiny_model()
    masks = torch.zeros(1, 16, dtype=torch.bool)
    masks[0, 5] = True  # row 1, column 1
    pixel = model.patch_to_pixel_mask(masks)[0, 0]
    assert pixel[8:16, 8:16].all() and int(pixel.sum()) == 64


def test_positional_embedding_is_fixed_and_distinct():
    pe = sincos_pos_embed(32, 4)
    assert pe.shape == (16, 32)
    assert torch.cdist(pe, pe).add(torch.eye(16) * 10).min() > 0.1  # no two positions share an embedding
    model = tiny_model()
    assert not any("pos_embed" in name for name, _ in model.named_parameters())


def test_gradients_reach_encoder_and_decoder(images):
    model = tiny_model().train()
    masks = complementary_masks(model.num_patches, 0.75)
    model.reconstruct(images, masks).sub(images).pow(2).mean().backward()
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "mask_token", "decoder_pred.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "depths", [(2, 2), (4, 2), (6, 6), (2, 4)],
)
def test_encoder_and_decoder_depths_are_free(depths):
    model = tiny_model(depth=depths[0], decoder_depth=depths[1])
    assert (len(model.blocks), len(model.decoder_blocks)) == depths
    assert f"E{depths[0]}D{depths[1]}" in repr(model)


def test_clear_errors(images):
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        MaskedAutoencoder(img_size=30, patch_size=8, embed_dim=32, num_heads=2, decoder_embed_dim=16, decoder_num_heads=2)
    with pytest.raises(ValueError, match="divisible"):
        tiny_model(embed_dim=30, num_heads=4)
    model = tiny_model()
    masks = complementary_masks(16, 0.75)
    with pytest.raises(ValueError, match="channels"):
        model.predict_views(images[:, :1], masks)
    with pytest.raises(ValueError, match="img_size=32"):
        model.predict_views(torch.rand(1, 3, 40, 40), masks)
    with pytest.raises(ValueError, match=r"masks must have shape"):
        model.predict_views(images, complementary_masks(64, 0.75))
    with pytest.raises(ValueError, match="bool"):
        model.predict_views(images, masks.float())
    with pytest.raises(ValueError, match="at least one visible"):
        model.predict_views(images, torch.ones(2, 16, dtype=torch.bool))


def test_input_normalisation_is_undone_on_the_output():
    from maskad_core.model import INPUT_NORMS

    mean, std = INPUT_NORMS["imagenet"]
    model = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, num_heads=2,
                              decoder_embed_dim=32, decoder_num_heads=2, pixel_mean=mean,
                              pixel_std=std).eval()
    torch.nn.init.zeros_(model.decoder_pred.weight)
    torch.nn.init.zeros_(model.decoder_pred.bias)
    images = torch.rand(2, 3, 32, 32)
    views = model.predict_views(images, complementary_masks(16, 0.75))
    # a zero prediction in the standardised space is the normalisation's mean in pixel space
    expected = torch.tensor(mean).view(1, 1, 3, 1, 1).expand_as(views)
    torch.testing.assert_close(views, expected)
    with pytest.raises(ValueError, match="pixel_mean and pixel_std"):
        MaskedAutoencoder(img_size=32, patch_size=8, pixel_mean=(0.5,), pixel_std=(0.2,))
