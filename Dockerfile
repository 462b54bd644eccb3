# VideoBot: `python -m bot` in a slim image, as a non-root user, with all state in the /data volume.
# Build: docker build -t videobot .    Run: see docs/operations.md (and compose.yaml for sandbox mode).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY sandbox ./sandbox
RUN pip install . \
    && useradd --create-home --uid 10001 --user-group videobot \
    && mkdir -p /data \
    && chown videobot:videobot /data

# State lives in /data whatever an --env-file says: these are the defaults (.env.example leaves the
# storage lines commented out), and the working directory is /data, so even a relative
# DATABASE_PATH or SPOOL_DIR lands inside the volume. A .env in /data is read as well.
ENV DATABASE_PATH=/data/bot.db SPOOL_DIR=/data/spool
WORKDIR /data
USER videobot
VOLUME ["/data"]

# healthy while the job runner and the Discord gateway both beat (files next to the database)
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot", "health"]
# docker stop sends SIGTERM: running steps finish, every unfinished job resumes at the next start
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
