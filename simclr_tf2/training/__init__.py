"""Training and evaluation runs: what run.py's modes do.

Modules: `runner` (one --mode end to end), `experiment` (what training and
evaluation share), `trainer`, `evaluator`, `callbacks` (progress, NaN
guard, the one checkpoint writer), `teacher` (distillation teachers),
`distribute` (strategies) and `preemption` (SIGTERM / SIGINT; no
TensorFlow at import, so the entry points install it first). This package
imports nothing on import.
"""
