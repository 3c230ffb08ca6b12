# bids-glm: first-level task-fMRI statistics as a BIDS-App.
#
#   docker build --build-arg VERSION=0.1.0 -t bidsglm/bids-glm:0.1.0 .
#   docker run --rm --read-only -u "$(id -u):$(id -g)" \
#     -v /data/bids:/bids:ro -v /data/out:/out -v /data/work:/work \
#     bidsglm/bids-glm:0.1.0 /bids /out participant --work-dir /work
#
# Three stages: "runtime" holds Python and the system libraries; "build" adds python3-venv,
# creates a virtualenv and installs the package with pip (build isolation, wheels); the
# final image is "runtime" plus only that virtualenv, so no pip, pip cache, build tree or
# apt lists end up in it.
# pip may need a CA bundle (a package index behind a TLS-intercepting proxy): pass it as the
# build secret "hostca" (--secret id=hostca,src=/etc/ssl/certs/ca-certificates.crt); it is
# mounted during that single RUN only and never stored in a layer.

FROM debian:bookworm-slim AS runtime

# Python 3.11 (Debian 12's python3) and the libraries WeasyPrint loads for the PDF report
# (pango, pango's fontconfig backend, harfbuzz-subset for font subsetting) with one font
# family. fc-cache writes the system font cache now, so fontconfig never needs to write one
# at run time (the root file system may be read-only). fontconfig checks a cache against
# its folder's modification time to the nanosecond, and image layers keep whole seconds
# only: the font folders get a whole-second time first, or every run would rebuild it.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
      fontconfig fonts-dejavu-core \
 && mkdir -p /usr/local/share/fonts \
 && find /usr/share/fonts /usr/local/share/fonts -type d -exec touch -m -d @1700000000 {} + \
 && fc-cache --system-only --really-force \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log


FROM runtime AS build

ARG DEBIAN_FRONTEND=noninteractive
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY . /src

# The BIDS validator (bids-validator-deno: the official TypeScript validator with its own
# Deno runtime) is installed next to bids-glm, for `--entrypoint bids-validator-deno`.
# Then the virtualenv is trimmed: pip and setuptools go (nothing installs at run time), and
# so do the libraries' own test suites (~110 MB: pandas, scipy, numpy, matplotlib, nibabel
# tests are never imported by bids-glm). Bytecode is compiled once here, since the image
# is meant to run read-only.
RUN --mount=type=secret,id=hostca \
    if [ -s /run/secrets/hostca ]; then export PIP_CERT=/run/secrets/hostca; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install /src "bids-validator-deno>=2" \
 && /opt/venv/bin/python -m pip uninstall -y pip setuptools \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} + \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib


FROM runtime

# VERSION is the package version (bids_glm/__init__.py); IMAGE_TAG is what outputs record
# in dataset_description.json GeneratedBy[].Container.Tag (through BIDS_GLM_CONTAINER).
ARG VERSION=dev
ARG IMAGE_TAG=bidsglm/bids-glm:${VERSION}

LABEL org.opencontainers.image.title="bids-glm" \
      org.opencontainers.image.description="BIDS-App for first-level task-fMRI statistics: design matrices, GLM fits, fixed effects, BIDS-Derivatives statistical maps" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/bids-glm/bids-glm" \
      org.opencontainers.image.url="https://github.com/bids-glm/bids-glm" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# A default non-root user; any other uid:gid works too (docker run -u "$(id -u):$(id -g)").
RUN useradd --no-create-home --home-dir /work --uid 1000 --user-group \
      --shell /usr/sbin/nologin bidsglm \
 && mkdir -p /bids /out /work \
 && chmod 1777 /work

COPY --from=build /opt/venv /opt/venv

# /work is the scratch folder (mount it, and pass --work-dir /work). Everything that could
# write outside OUTPUT_DIR points there: temporary files, caches (fontconfig, Deno,
# matplotlib) and HOME, so `docker run --read-only` works for any user id.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/work \
    TMPDIR=/work \
    XDG_CACHE_HOME=/work/.cache \
    MPLCONFIGDIR=/work/.cache/matplotlib \
    DENO_DIR=/work/.cache/deno \
    BIDS_GLM_CONTAINER=${IMAGE_TAG}

USER bidsglm
WORKDIR /work
ENTRYPOINT ["bids-glm"]
CMD ["--help"]
