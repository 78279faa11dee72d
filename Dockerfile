# The production image: one image, three process types (web, worker, beat), chosen by command.
FROM python:3.13-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=oversight.settings

WORKDIR /app

# Dependencies first, from the same hash-pinned lock file `make install` uses.
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

COPY . .
# The Python client (client/, its own package) on the path, as `make install` puts it.
RUN echo /app/client > "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/oversight-client.pth"

# Static files are collected at build time; WhiteNoise serves them from STATIC_ROOT.
RUN DEBUG=false SECRET_KEY=collectstatic-only OVERSIGHT_STATIC_ROOT=/app/staticfiles \
    python manage.py collectstatic --noinput --verbosity 0

RUN useradd --system --uid 10001 --home-dir /app oversight \
    && mkdir -p /app/var/workspace /app/checkpoints /app/metrics \
    && chown -R oversight /app/var /app/checkpoints /app/metrics
USER oversight

ENV HOST=0.0.0.0 PORT=8000 OVERSIGHT_STATIC_ROOT=/app/staticfiles
EXPOSE 8000
CMD ["python", "-m", "oversight.processes", "web"]
