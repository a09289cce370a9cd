# comfyfleet: one image for every role (balancer, node, sim, up).
# Build: docker build -t comfyfleet .   Run: docker run comfyfleet balancer --help
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build
COPY pyproject.toml README.md ./
COPY src ./src
COPY workflows ./workflows
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist/*.whl /tmp/
# With the s3 extra: `--store-url s3://...` works in the image; editor: ComfyUI's editor at /.
RUN pip install "$(ls /tmp/*.whl)[s3,editor]" && rm /tmp/*.whl \
    && useradd --system --uid 10001 --home-dir /app --create-home comfyfleet
USER comfyfleet
WORKDIR /app
# Listen on all interfaces inside the container; credentials are then required
# (API_USERNAME / API_PASSWORD), or the role refuses to start.
ENV COMFYFLEET_HOST=0.0.0.0
ENTRYPOINT ["comfyfleet"]
CMD ["--help"]
