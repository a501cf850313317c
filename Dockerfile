# The API as one small image: installed from this repository into a virtual environment, run as
# an unprivileged user. `compose.yaml` runs it as the API, the one-shot migration and the workers.
# Build: docker build -t privacy-api .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# npm fetches the playground's scripts (GraphiQL, React) into the installed package, so that the
# staff playground needs no outside host; it stays in this stage, out of the image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/privacy-api
COPY . .
RUN /opt/privacy-api/bin/pip install .
# From another folder, so that the installed package (not this checkout) receives the files; the
# build fails if they cannot be fetched or do not match the hashes the page declares.
WORKDIR /tmp
RUN /opt/privacy-api/bin/python -m web.playground

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 privacy \
    && useradd --system --create-home --home-dir /app --uid 10001 --gid 10001 privacy
COPY --from=build /opt/privacy-api /opt/privacy-api
ENV PATH=/opt/privacy-api/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PRIVACY_API_ENV=production \
    PRIVACY_API_DATA_DIR=/app/data \
    PRIVACY_API_PORT=8000
USER 10001:10001
WORKDIR /app
EXPOSE 8000
# Ready means the database and the shared rate-limit store answer (see /readyz in the README),
# asked on the port `serve` listens on: PRIVACY_API_PORT, however the container is run.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['PRIVACY_API_PORT'], timeout=4)"]
CMD ["privacy-api", "serve", "--host", "0.0.0.0"]
