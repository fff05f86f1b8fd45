"""Side-by-side benchmarks of samkit, ``ultralytics.SAM`` and Meta's reference code (``python -m benchmarks``)."""
