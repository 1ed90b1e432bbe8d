"""Measurements of the package, never imported by it: ``perf/``, the performance benchmark
(``python -m bench``); ``records/``, the evidence each record of ``results/`` was produced by
(``python -m bench.records.<name>``, the command printed in each record)."""
