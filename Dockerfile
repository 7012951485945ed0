# Leadscore scoring server.
# Build:  docker build -t leadscore .
# Run:    docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=... -e LEADSCORE_DATABASE_URL=postgresql+psycopg://... leadscore
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LEADSCORE_HOME=/var/lib/leadscore

# LightGBM needs the OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY leadscore ./leadscore
COPY features ./features
COPY models ./models
COPY training ./training
COPY serving ./serving
RUN pip install '.[postgres]'

RUN useradd --create-home --uid 10001 leadscore \
    && mkdir -p /var/lib/leadscore \
    && chown leadscore:leadscore /var/lib/leadscore
USER leadscore

# MLFLOW_TRACKING_URI (MLflow server or PostgreSQL) and LEADSCORE_DATABASE_URL come from the environment.
EXPOSE 8000
# The server's /healthz by default; a Dask scheduler or worker container from this image sets
# LEADSCORE_HEALTH_URL to its own /health (README, "Past one machine: Dask").
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["leadscore", "healthcheck"]
CMD ["leadscore", "serve", "--host", "0.0.0.0"]
