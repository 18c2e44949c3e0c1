#!/usr/bin/env bash
# Installs Debian's Open MPI (libopenmpi-dev: mpi.h and ompi-c.pc for `--traits MPI`; openmpi-bin:
# mpirun) for the MPI tests (tools/ci/mpi-test.sh) when mpirun or ompi-c is missing;
# tools/ci/setup.sh runs it. Needs apt-get and root (or password-less sudo). The default build
# and its tests need none of it.
set -euo pipefail
if command -v mpirun >/dev/null && pkg-config --exists ompi-c 2>/dev/null; then exit 0; fi
bash "$(dirname "$0")/apt-install.sh" install-mpi libopenmpi-dev openmpi-bin pkg-config
command -v mpirun >/dev/null && pkg-config --exists ompi-c
