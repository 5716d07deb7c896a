# eqtool image. CPU torch by default; for CUDA pass the torch wheel spec of your choice, e.g.
#   docker build -t eqtool .                                      # CPU
#   docker build --build-arg TORCH_VARIANT=cuda -t eqtool:cuda .   # CUDA build of torch from PyPI
#   docker build --build-arg EXTRAS= -t eqtool:slim .              # without pyscf/tblite and the docking tools
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# cpu: the CPU-only wheel from the PyTorch CPU index; cuda: PyPI's default Linux wheel (CUDA)
ARG TORCH_VARIANT=cpu
# optional extras: dft (pyscf, tblite: Hamiltonian SCF, reference data), dock (vina, meeko, gemmi, posebusters)
ARG EXTRAS=dft,dock

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

RUN apt-get update && apt-get install -y --no-install-recommends libxrender1 libxext6 \
    && rm -rf /var/lib/apt/lists/*

RUN if [ "$TORCH_VARIANT" = "cpu" ]; then \
      pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu; \
    else \
      pip install "torch==${TORCH_VERSION}"; \
    fi

WORKDIR /opt/eqtool
COPY pyproject.toml README.md ./
COPY eqtool ./eqtool
COPY recipes ./recipes
COPY data ./data
RUN if [ -n "$EXTRAS" ]; then pip install ".[${EXTRAS}]"; else pip install .; fi

WORKDIR /work
ENTRYPOINT ["eqtool"]
CMD ["--help"]
