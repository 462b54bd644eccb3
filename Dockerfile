FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/bot.db SPOOL_DIR=/data/spool

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY sandbox ./sandbox
RUN pip install . && useradd --create-home --uid 10001 videobot && mkdir -p /data && chown videobot /data

USER videobot
VOLUME ["/data"]
# healthy when the job database is readable (the bot creates it at start)
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s \
    CMD python -c "import os, sqlite3; sqlite3.connect(os.environ['DATABASE_PATH']).execute('SELECT COUNT(*) FROM jobs')" || exit 1
CMD ["python", "-m", "bot"]
