"""Training a model: every setting of a run (``config``, validated against what the method and data
declare), the one ``key=value`` grammar (``overrides``), the splits a configuration opens, the
driver (``train``), one epoch, distributed training, run folders, device and seeds. It knows
nothing of evaluation."""
