"""The performance benchmark: throughput, memory and FLOPs against the machine's matmul rate.

Run ``python -m bench`` (or ``maskad bench``); ``--quick`` runs a tiny configuration in seconds.
"""
