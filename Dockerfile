# kartra-mcp over streamable HTTP: MCP at /mcp, health at /healthz, as an unprivileged user.
# Build:  docker build -t kartra-mcp .
# Run:    docker run -p 8000:8000 -e KARTRA_MCP_HTTP_TOKEN=... -e MEMBRANE_TOKEN=... kartra-mcp
# Demo:   docker run -p 8000:8000 -e KARTRA_MCP_HTTP_TOKEN=... kartra-mcp serve --sandbox \
#           --transport http --host 0.0.0.0 --port 8000

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The pinned, hash-checked dependencies first, so a source change reuses this layer; the build
# backend, pinned and hash-checked as well, in an environment of its own that stays behind. The
# hosted set (main plus the Redis and PostgreSQL drivers), so the image also runs as a replica.
COPY requirements/hosted.txt requirements/build.txt requirements/
RUN python -m venv /opt/kartra-mcp \
    && /opt/kartra-mcp/bin/pip install --require-hashes --no-deps -r requirements/hosted.txt \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# No isolated build environment: it would be filled from the index, unpinned.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/kartra-mcp/bin/pip install --no-deps --no-build-isolation /tmp/dist/kartra_mcp-*.whl \
    && /opt/kartra-mcp/bin/pip check

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/kartra kartra \
    && mkdir -p /home/kartra/state /home/kartra/cache \
    && chown -R kartra:kartra /home/kartra
COPY --from=build /opt/kartra-mcp /opt/kartra-mcp
ENV PATH=/opt/kartra-mcp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_STATE_HOME=/home/kartra/state \
    XDG_CACHE_HOME=/home/kartra/cache
USER 10001:10001
WORKDIR /home/kartra
# The audit log lives here; mount a volume to keep it across containers.
VOLUME ["/home/kartra/state"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["kartra-mcp"]
CMD ["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
