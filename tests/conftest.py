from __future__ import annotations

import os

# Keep matplotlib headless and MLflow quiet in tests; no test relies on a network.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
