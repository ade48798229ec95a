# RTF service image. CPU by default; --build-arg GPU=1 swaps faiss-cpu for faiss-gpu.
#   docker build -t rtf . && docker run -p 8000:8000 -v rtf-data:/srv/rtf/var rtf
# Stage 1 installs the service (no PyTorch: the bundled checkpoint ships its ONNX serving export) into a
# virtual environment and prepares the demo catalogue; stage 2 is the runtime: the environment, the
# source, a non-root user, the data volume. For a checkpoint of your own without its export, build with
# --build-arg EXTRAS=train (PyTorch, CPU wheels) or write the export first: python -m encoder.export.
FROM python:3.11-slim AS build
ARG GPU=0
ARG EXTRAS=
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /srv/rtf
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY encoder ./encoder
COPY training ./training
COPY indexing ./indexing
# With EXTRAS=train, CPU torch wheels from the PyTorch CPU index keep the image small.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".${EXTRAS:+[$EXTRAS]}" \
 && if [ "$GPU" = "1" ]; then pip uninstall -y faiss-cpu && pip install "faiss-gpu-cu12>=1.8"; fi \
 && rtf-synth --survey ztf --n 3000 --seed 2026 --min-detections 3 --out /srv/rtf/var/demo.parquet

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH \
    RTF_DEMO=1 RTF_DEMO_FILE=/srv/rtf/var/demo.parquet RTF_DATABASE_URL=sqlite:////srv/rtf/var/rtf.db \
    RTF_INDEX_DIR=/srv/rtf/var/index RTF_CACHE_DIR=/srv/rtf/var/cache
RUN useradd --create-home --uid 10001 rtf
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=rtf:rtf /srv/rtf /srv/rtf
WORKDIR /srv/rtf
USER rtf
# the SQLite database, the index files, the ONNX cache and the demo catalogue
VOLUME /srv/rtf/var
EXPOSE 8000
HEALTHCHECK --start-period=120s --interval=30s --timeout=5s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["python", "-m", "app.server", "--host", "0.0.0.0", "--port", "8000"]
