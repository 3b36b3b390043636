# syntax=docker/dockerfile:1
#
# The alaz agent image: `docker build -t alaz:0.1.0 .`
#
#   bpf      compiles ebpf/*.bpf.c into CO-RE objects with Debian bookworm's clang 14 and libbpf
#            headers (the toolchain of Dockerfile.builder and CI, so the objects are byte-identical
#            to the committed ones; the committed ones are not copied in, see .dockerignore)
#   build    builds the alaz wheel around those objects and installs it, with its pinned
#            dependencies, into the virtualenv /opt/alaz
#   runtime  debian slim + python3 + libbpf1 + that virtualenv; nothing else (no compiler, no pip)
#
# Reproducible: every base is pinned by tag, every apt package and every Python dependency by
# version; no apt lists or pip caches are left in any layer.
#
# It runs as root, and cannot do otherwise: bpf(2) and perf_event_open(2) check capabilities
# (CAP_BPF, CAP_PERFMON), and a non-root user loses its capabilities at execve unless they are
# ambient or file capabilities, which Kubernetes cannot grant portably (no ambient capabilities
# in the pod spec; file capabilities on the Python interpreter would hand them to every Python
# program in the image). Root here is confined the other way: the Helm chart drops every
# capability but BPF and PERFMON, sets no_new_privs and a read-only root filesystem.

FROM debian:12.11-slim AS bpf
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang=1:14.0-55.7~deb12u1 llvm=1:14.0-55.7~deb12u1 libbpf-dev=1:1.1.2-0+deb12u1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY builder/build-ebpf.sh builder/
COPY ebpf/ ebpf/
RUN ./builder/build-ebpf.sh

FROM debian:12.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The versions the test suite ran against; a new dependency of alaz still installs (at its
# newest version) and `pip check` fails the build if anything is missing or clashes.
RUN printf '%s\n' hatchling==1.27.0 \
      msgspec==0.22.0 orjson==3.13.0 pydantic==2.14.4 pydantic-core==2.50.5 \
      pydantic-settings==2.16.3 python-dotenv==1.2.4 annotated-types==0.8.0 \
      typing-extensions==4.16.0 typing-inspection==0.4.5 structlog==26.1.0 \
      httpx==0.28.1 httpcore==1.0.9 h11==0.16.0 anyio==4.16.0 idna==3.20 \
      certifi==2026.10.19.post1 capstone==5.0.9 pyelftools==0.33 \
      kubernetes-asyncio==36.1.0 aiohttp==3.14.5 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 \
      attrs==26.1.0 frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 yarl==1.25.1 \
      python-dateutil==4.0.0 pyyaml==6.0.4 six==1.17.0 tzdata==2026.6 urllib3==2.8.0 \
      > /constraints.txt
ENV PIP_CONSTRAINT=/constraints.txt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY src/ src/
COPY --from=bpf /src/src/alaz/objects/ src/alaz/objects/
RUN python3 -m venv /opt/alaz \
 && /opt/alaz/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/alaz/bin/pip install --no-cache-dir /wheels/alaz-*.whl \
 && /opt/alaz/bin/pip check \
 && /opt/alaz/bin/pip uninstall --yes pip setuptools \
 && /opt/alaz/bin/python -c "import alaz.cli, alaz.doctor, alaz.app; \
import importlib.resources as r; assert r.files('alaz.objects').joinpath('l7.bpf.o').is_file()"

FROM debian:12.11-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 libbpf1=1:1.1.2-0+deb12u1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/alaz /opt/alaz
ENV PATH=/opt/alaz/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="alaz" \
      org.opencontainers.image.description="eBPF node agent: every request between services on a node" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# /healthz, /readyz and /metrics (ALAZ_HEALTH_PORT)
EXPOSE 8181
ENTRYPOINT ["alaz", "run"]
