# The project image: Meltano, every plugin and Airflow installed at build time, with the
# same pinned versions as `make run` (the Dockerfile calls the same Makefile targets).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NW_PROJECT_ROOT=/project \
    MELTANO_PROJECT_ROOT=/project \
    AIRFLOW_HOME=/project/.airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/project/orchestrate/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    PATH=/project/.venv/bin:/project/.venv-airflow/bin:$PATH

# make comes from the pinned base image's Debian release; an exact apt version would break
# the build each time Debian publishes a point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /project

# Dependency definitions first, so code changes do not reinstall everything.
COPY Makefile pyproject.toml uv.lock meltano.yml ./
COPY plugins/ plugins/
COPY pipelines/ pipelines/
COPY extract/ extract/
COPY load/ load/
COPY northwind_elt/ northwind_elt/
COPY orchestrate/requirements-airflow.txt orchestrate/requirements-airflow.txt
RUN make install airflow-install

COPY transform/ transform/
COPY orchestrate/ orchestrate/
COPY scripts/ scripts/
COPY data/northwind.sql data/order_details.csv data/
COPY data/people-places/ data/people-places/

EXPOSE 8080
# Scheduler, DAG processor, triggerer and the API server / UI in one process tree: the API
# server first, the others once it answers (northwind_elt/entry/airflow_local.py).
CMD ["nw", "airflow", "up"]
