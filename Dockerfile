# One image for every ParkGuard role (serve, collect, setup commands); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# uid 1883 is also Mosquitto's in eclipse-mosquitto, so the auth files the setup role writes
# into the shared volume (mode 0640) are readable by the broker and nobody else.
RUN groupadd --gid 1883 parkguard \
    && useradd --uid 1883 --gid 1883 --no-create-home --home-dir /app parkguard

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY collector ./collector
COPY rules ./rules
COPY maintenance ./maintenance
COPY compliance ./compliance
COPY api ./api
COPY simulators ./simulators
COPY parkguard ./parkguard
RUN pip install . \
    && mkdir -p /mosquitto/auth /app/var \
    && chown parkguard:parkguard /mosquitto/auth /app/var
COPY examples ./examples

USER parkguard
EXPOSE 8000
CMD ["parkguard", "serve"]
