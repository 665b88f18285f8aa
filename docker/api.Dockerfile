# syntax=docker/dockerfile:1
# The API / worker image: `cgd migrate`, `cgd api`, `cgd worker`. No torch: only the api and
# worker extras are installed, and the build fails if torch sneaks in through a dependency.
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 1000 cgd \
 && useradd --system --uid 1000 --gid cgd --create-home --home-dir /home/cgd \
      --shell /usr/sbin/nologin cgd

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY cgd ./cgd
COPY services ./services
COPY migrations ./migrations
# Editable: `cgd migrate` finds its Alembic scripts in /app/migrations, next to the package.
RUN pip install -e ".[api,worker]" \
 && python -c "import importlib.util, sys; sys.exit('torch must not be installed in this image' if importlib.util.find_spec('torch') else 0)" \
 && python -m compileall -q cgd services migrations

USER cgd
ENV HOME=/home/cgd
EXPOSE 8000
CMD ["cgd", "api", "--host", "0.0.0.0", "--port", "8000"]
