"""The paper's setting on one GPU, prepared as one command (issue 26, deliverable 3).

``python -m bench.gpu pack --out .gpu-pack`` (or ``make gpu-pack``) packs the real data, resized to
the model's input, into one git-ignored folder; ``python -m bench.gpu run --pack .gpu-pack
--budget-s 540 --out DIR`` trains the ``paper`` profile's model on every packed category as one model,
in the epochs the budget affords (at most the paper's 1000), evaluates it and writes
``DIR/gpu-paper.{json,md}``. The run imports only torch, timm, numpy, PIL and the torch-only parts
of maskad_core (model, masking, scoring, detectors), so that it works on a bare GPU box; where
pytorch-msssim, lpips, scipy or scikit-learn are missing it falls back in the ways the record names.
"""
