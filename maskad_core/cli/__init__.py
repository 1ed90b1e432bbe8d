"""The ``maskad`` command: ``main`` (train, data synth, study, bench) and ``evaluate`` (evaluate,
score, baseline). Nothing in the package imports it."""
