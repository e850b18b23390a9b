# The shadowroute operator image.
#
#   docker build -t shadowroute/operator:dev .
#
# Multi-stage: the build stage installs the package and its dependencies into a
# virtualenv and compiles the bytecode; the final stage copies only that virtualenv
# onto the same slim Python base and runs as an unprivileged user, so the chart can
# mount the root filesystem read-only (nothing is written at run time but /tmp).
#
# The base is pinned to an exact tag; pin it by digest in your registry mirror
# (python:3.11.11-slim-bookworm@sha256:...) for bit-for-bit rebuilds.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/shadowroute
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/shadowroute/bin/pip install --no-compile . \
 && /opt/shadowroute/bin/python -m compileall -q /opt/shadowroute \
 && /opt/shadowroute/bin/shadowroute-operator --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="shadowroute" \
      org.opencontainers.image.description="Kubernetes operator: shadow, canary and promote new versions of a service, gated by Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/shadowroute /opt/shadowroute
ENV PATH=/opt/shadowroute/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# 65532: the conventional "nonroot" uid; the chart sets the same in its securityContext.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["shadowroute-operator"]
CMD ["--log-format=json"]
