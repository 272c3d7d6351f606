# One image per service: docker build -f infra/docker/service.Dockerfile --build-arg SERVICE=ml .
# Only that service's workspace member and its dependencies are installed (ml alone pulls
# LightGBM); no embedded servers: images run with ALPHASAGA_ENV=production.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ARG SERVICE
RUN pip install --no-cache-dir uv
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY contracts contracts
COPY shared shared
COPY services services
ENV UV_PROJECT_ENVIRONMENT=/app/.venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN uv sync --frozen --no-dev --no-editable --package "alphasaga-${SERVICE}"

FROM python:${PYTHON}-slim
ARG SERVICE
# LightGBM needs OpenMP; codegen's sandbox needs bubblewrap (production accepts no other)
# and filters system calls through libseccomp.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 bubblewrap libseccomp2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 alphasaga
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    ALPHASAGA_ENV=production \
    ALPHASAGA_HTTP_PORT=8000 \
    SERVICE_MODULE=alphasaga_${SERVICE}
USER alphasaga
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/ready').status == 200 else 1)"
CMD ["sh", "-c", "exec python -m $SERVICE_MODULE"]
