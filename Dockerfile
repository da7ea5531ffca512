# One agentkube image, several entrypoints (all subcommands of `agentkube`):
#   operator            docker run IMAGE operator --config /etc/agentkube-operator/config.yaml
#   agent runtime       docker run IMAGE agent serve /etc/agentkube/agent.yaml --port 8080
#   sandbox gateway     docker run IMAGE sandbox gateway
# Runs as the unprivileged user 65532 with a read-only root: the operator's agent pods and
# deploy/operator/deployment.yaml use the Pod Security `restricted` profile.
#
# Without Docker, `make image` (hack/image/build.sh) builds the same image from Debian packages:
# both install the dependencies from requirements/image.lock (exact pins, hashes, wheels only)
# and then the project's wheel without dependencies, so both have the same entrypoints, user,
# environment and working directory. Change one, change the other.

FROM python:3.12-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/image.lock ./requirements/
COPY src ./src
RUN python -m venv /opt/agentkube \
 && /opt/agentkube/bin/pip install --require-hashes --no-deps --only-binary :all: \
      -r requirements/image.lock \
 && /opt/agentkube/bin/pip install --no-deps .

FROM python:3.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 agentkube \
 && useradd --uid 65532 --gid 65532 --home-dir /var/lib/agentkube --create-home agentkube
COPY --from=build /opt/agentkube /opt/agentkube
ENV PATH=/opt/agentkube/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENTKUBE_DATA_DIR=/var/lib/agentkube
USER 65532:65532
WORKDIR /var/lib/agentkube
EXPOSE 8080
ENTRYPOINT ["agentkube"]
CMD ["--help"]
