#!/usr/bin/env bash
# Make this machine able to run nexus-fast, its tests and its benchmarks: Debian packages that are missing are
# installed (PostgreSQL 15, Redis, and the peers bench/ compares against), PostgreSQL and Redis are started if
# they are not running, and the Python package is installed with its native modules compiled.
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_pkgs+=(postgresql-15 postgresql-client-15)
[ -x /usr/lib/postgresql/15/bin/pg_basebackup ] || need_pkgs+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need_pkgs+=(redis-tools)
command -v pgbench >/dev/null 2>&1 || need_pkgs+=(postgresql-contrib)
command -v pgbouncer >/dev/null 2>&1 || need_pkgs+=(pgbouncer)
command -v nutcracker >/dev/null 2>&1 || need_pkgs+=(nutcracker)
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing Debian packages: ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    # The Debian packages start their own daemons; pgbouncer/nutcracker/haproxy must not hold ports bench/ uses.
    for svc in pgbouncer nutcracker haproxy; do $SUDO service "$svc" stop >/dev/null 2>&1 || true; done
fi

# PostgreSQL on 127.0.0.1:5432 with trust for local TCP (the test convention of this project's machines).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    cluster_version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
    if [ -z "$cluster_version" ]; then
        say "creating a PostgreSQL cluster"
        $SUDO pg_createcluster 15 main >/dev/null
        cluster_version=15
    fi
    hba=/etc/postgresql/$cluster_version/main/pg_hba.conf
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        say "allowing trust auth from 127.0.0.1 in $hba (test machine)"
        $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nhost replication all 127.0.0.1/32 trust' "$hba"
    fi
    say "starting PostgreSQL $cluster_version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    say "starting Redis on 127.0.0.1:6379"
    mkdir -p /var/lib/redis /var/log/redis
    $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi

say "installing nexus-fast (compiling native/ into nexus_fast._native)"
NEXUS_FAST_REQUIRE_NATIVE=1 python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]'
say "ready: $(python3 -m nexus_fast version | head -n1)"
