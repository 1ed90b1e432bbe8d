"""Scoring trained models and training-free detectors: a model on a test split (``evaluate``), the one
path from maps to metrics (``results``), a finished run's record (``run_record``, with
``train_and_evaluate``), the detectors, the encoder-token score and new images (``new_images``)."""
