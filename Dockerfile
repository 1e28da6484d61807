# The mailscan image: SMTP front (`mailscan serve`), the av and spam worker pools, beat and
# Flower all run from it; compose.yaml chooses the command. clamd and spamd have their own
# images under docker/. No settings or secrets are baked in: they come from the environment.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the package is built from (the repository also holds a venv and caches).
COPY pyproject.toml README.md ./
COPY beat ./beat
COPY mailserver ./mailserver
COPY tasks ./tasks
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# libmagic: the banned-attachment engine knows a file's type by its bytes.
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels mailscan

# A fixed uid/gid, so volumes and shared folders on other hosts can be given to it.
# The data folders exist in the image, owned by that user: a new named volume mounted on one
# of them starts with this ownership.
RUN groupadd --system --gid 10001 mailscan \
    && useradd --system --uid 10001 --gid mailscan --home-dir /var/lib/mailscan \
        --no-create-home --shell /usr/sbin/nologin mailscan \
    && install -d -o mailscan -g mailscan -m 0750 /var/lib/mailscan \
        /var/lib/mailscan/spool /var/lib/mailscan/maildir /var/lib/mailscan/quarantine \
        /var/lib/mailscan/crashdumps /var/lib/mailscan/beat

# In a container the SMTP front listens on every interface (the default is loopback).
ENV MAILSCAN_VAR_DIR=/var/lib/mailscan \
    MAILSCAN_SMTP_HOST=0.0.0.0
USER mailscan
WORKDIR /var/lib/mailscan

EXPOSE 2525 5555
CMD ["mailscan", "serve"]
