"""Candidate changes to model.py, measured against the model as it is (``python -m bench.perf.experiments``).

model.py belongs to the lead; these variants re-implement ``predict_views``/``reconstruct`` with one
change each, so that a proposal comes with a measured effect. Each variant's output is checked
against the model's; times are process CPU time (steady on a shared machine), interleaved, medians.

* ``patch-space``: combine the views (eq. 3) on the (B, n, L, p*p*C) patches and unpatchify once,
  instead of unpatchifying n views and weighting them with a pixel mask.
* ``chunked``: run each transformer stack on chunks of sequences whose MLP activations stay under
  ``CHUNK_BYTES`` (cache-sized) instead of on all B*n sequences at once.
* ``no-grad``: ``torch.no_grad`` (what evaluate.py uses) instead of ``torch.inference_mode``.
* ``sdpa-math``: the math attention backend instead of the CPU flash kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.perf.configs import default_configs, quick_configs
from bench.perf.core import Workload, make_loss
from bench.perf.flops import median

CHUNK_BYTES = 8 * 2**20


def _encode_decode(model, images, masks, chunk_bytes: int | None):
    """model.predict_views up to the prediction head, optionally with chunked blocks: (B, n, L, P)."""
    masks = model._check_inputs(images, masks)
    b, n, length = masks.shape
    tokens = model.patch_embed(images) + model.pos_embed
    counts = (~masks).sum(-1)
    k = int(counts.max())
    order = torch.argsort(masks.to(torch.uint8), dim=-1, stable=True)[..., :k]
    x = torch.gather(tokens, 1, order.reshape(b, n * k, 1).expand(-1, -1, tokens.shape[-1]))
    x = x.reshape(b * n, k, -1)
    is_token = torch.arange(k, device=images.device) < counts.reshape(b * n, 1)
    attn_mask = None if bool(is_token.all()) else is_token[:, None, None, :]
    x = _run_blocks(model.blocks, x, attn_mask, chunk_bytes)
    x = model.decoder_embed(model.norm(x))
    x = torch.where(is_token.unsqueeze(-1), x, model.mask_token.to(x.dtype))
    full = model.mask_token.to(x.dtype).expand(b * n, length, -1)
    full = full.scatter(1, order.reshape(b * n, k, 1).expand(-1, -1, x.shape[-1]), x)
    x = _run_blocks(model.decoder_blocks, full + model.decoder_pos_embed, None, chunk_bytes)
    return model.decoder_pred(model.decoder_norm(x)).reshape(b, n, length, -1), masks


def _run_blocks(blocks, x, attn_mask, chunk_bytes):
    if chunk_bytes is None or len(blocks) == 0:
        sequences = x.shape[0]
    else:  # the MLP's hidden activations of one sequence: tokens * hidden width * element size
        hidden = blocks[0].mlp.fc1.out_features
        sequences = max(1, chunk_bytes // (x.shape[1] * hidden * x.element_size()))
    outputs = []
    for start in range(0, x.shape[0], sequences):
        part = x[start : start + sequences]
        mask = None if attn_mask is None else attn_mask[start : start + sequences]
        for block in blocks:
            part = block(part, attn_mask=mask)
        outputs.append(part)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def predict_views_chunked(model, images, masks, chunk_bytes: int = CHUNK_BYTES):
    patches, _ = _encode_decode(model, images, masks, chunk_bytes)
    b, n = patches.shape[:2]
    views = model.unpatchify(patches.reshape(b * n, model.num_patches, -1))
    return views.reshape(b, n, model.in_chans, model.img_size, model.img_size)


def reconstruct_patch_space(model, images, masks):
    patches, masks = _encode_decode(model, images, masks, None)
    weights = masks.to(patches.dtype)  # (B, n, L): 1 where the view predicted the patch
    count = weights.sum(1).unsqueeze(-1)
    total = torch.einsum("bnl,bnlp->blp", weights, patches)
    inputs = model.patchify(images).to(patches.dtype)
    return model.unpatchify(torch.where(count > 0, total / count.clamp(min=1), inputs))


def scoring_variants(work: Workload, batch: int) -> dict:
    """name -> callable returning the reconstruction of one scoring call."""
    model, images = work.model.eval(), work.images(batch)
    masks = work.masks()

    def with_mode(fn, mode=torch.inference_mode, backend=None):
        def call():
            ctx = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
            with mode(), ctx:
                return fn()
        return call

    return {
        "model": with_mode(lambda: model.reconstruct(images, masks)),
        "patch-space": with_mode(lambda: reconstruct_patch_space(model, images, masks)),
        "chunked": with_mode(lambda: model.combine_views(
            images, predict_views_chunked(model, images, masks), masks)),
        "no-grad": with_mode(lambda: model.reconstruct(images, masks), mode=torch.no_grad),
        "sdpa-math": with_mode(lambda: model.reconstruct(images, masks), backend=SDPBackend.MATH),
    }


def training_variants(work: Workload, batch: int) -> dict:
    """name -> callable running one training step (AdamW with lr 0, so the weights stay put)."""
    model, images = work.model, work.images(batch)
    loss_fn, _ = make_loss(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)

    def step(reconstruct):
        def call():
            model.train()
            loss, _ = loss_fn(reconstruct(images, work.masks()), images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return call

    return {
        "model": step(model.reconstruct),
        "patch-space": step(lambda x, m: reconstruct_patch_space(model, x, m)),
        "chunked": step(lambda x, m: model.combine_views(x, predict_views_chunked(model, x, m), m)),
    }


def compare(variants: dict, repeats: int) -> dict[str, float]:
    """Median process-CPU seconds per call of each variant, the variants taken in turn."""
    for fn in variants.values():
        fn()
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
    return {name: median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    configs = {c.name: c for c in default_configs() + quick_configs()}
    parser = argparse.ArgumentParser(prog="python -m bench.perf.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper-E2D4-224", choices=sorted(configs))
    parser.add_argument("--what", default="score", choices=("score", "train"))
    parser.add_argument("--batch", type=int, default=None, help="default: the config's batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = configs[args.config]
    work = Workload(config, torch.device("cpu"))
    if args.what == "score":
        batch = args.batch or config.infer_batch
        variants = scoring_variants(work, batch)
        reference = variants["model"]()
        for name, fn in variants.items():
            diff = float((fn() - reference).abs().max())
            print(f"{name}: max |difference| from the model {diff:.2e}")
    else:
        batch = args.batch or config.train_batch
        variants = training_variants(work, batch)
    seconds = compare(variants, args.repeats)
    print(f"{config.name}, {args.what}, batch {batch}, {torch.get_num_threads()} thread(s), "
          f"median CPU ms/image over {args.repeats} interleaved calls:")
    for name, value in seconds.items():
        print(f"  {name:12s} {1e3 * value / batch:9.2f}   speed-up {seconds['model'] / value:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
