# RTF service image (CPU by default; --build-arg GPU=1 adds faiss-gpu).
FROM python:3.11-slim
ARG GPU=0
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/rtf
COPY pyproject.toml README.md ./
COPY app ./app
COPY encoder ./encoder
COPY training ./training
COPY indexing ./indexing
COPY alembic ./alembic
COPY alembic.ini ./
# CPU torch wheels from the PyTorch CPU index keep the image small; the pins are the project's.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
 && if [ "$GPU" = "1" ]; then pip install ".[gpu]"; fi \
 && rtf-synth --survey ztf --n 3000 --seed 2026 --min-detections 3 --out /srv/rtf/var/demo.parquet \
 && python -c "from encoder.inference import Encoder; Encoder.load(precision='onnx', cache_dir='/srv/rtf/var/cache')"
# (the last step exports the model to ONNX once, so that a container starts without the ~15 s export)
ENV RTF_DEMO=1 RTF_DEMO_FILE=/srv/rtf/var/demo.parquet RTF_DATABASE_URL=sqlite:////srv/rtf/var/rtf.db \
    RTF_INDEX_DIR=/srv/rtf/var/index RTF_CACHE_DIR=/srv/rtf/var/cache
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["python", "-m", "app.server", "--host", "0.0.0.0", "--port", "8000"]
