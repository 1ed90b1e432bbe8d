"""``python -m bench``: the performance benchmark (:mod:`bench.perf`)."""

from bench.perf.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
