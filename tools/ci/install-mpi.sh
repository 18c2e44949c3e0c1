#!/usr/bin/env bash
# Installs Debian's Open MPI (libopenmpi-dev: mpi.h and ompi-c.pc for `--traits MPI`; openmpi-bin:
# mpirun) for the MPI tests (tools/ci/mpi-test.sh) when mpirun or ompi-c is missing;
# tools/ci/setup.sh runs it. Needs apt-get and root (or password-less sudo). The default build
# and its tests need none of it.
set -euo pipefail
if command -v mpirun >/dev/null && pkg-config --exists ompi-c 2>/dev/null; then exit 0; fi
if ! command -v apt-get >/dev/null; then
    echo "install-mpi: no apt-get here; install Open MPI (or MPICH) with your package manager" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "install-mpi: needs root (or password-less sudo) to run apt-get install libopenmpi-dev openmpi-bin" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >&2
"${as_root[@]}" apt-get install -y -qq libopenmpi-dev openmpi-bin pkg-config >&2
command -v mpirun >/dev/null && pkg-config --exists ompi-c
