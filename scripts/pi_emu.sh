#!/usr/bin/env bash
# pi_emu.sh - an emulated Raspberry Pi for scripts/pi_check.sh.
#
# The Pi is a Debian bookworm arm64 root filesystem (the base of Raspberry Pi OS 64-bit: Python
# 3.11, glibc 2.36) whose programs run under QEMU user-mode emulation, through the kernel's
# binfmt_misc. Root on a Debian or Ubuntu x86_64 machine.
#
#   pi_emu.sh setup                  host packages, binfmt, the root filesystem (~5 min and
#                                    ~330 MB the first time; then it only checks, in a second)
#   pi_emu.sh run [OPTIONS] DIR CMD  copy DIR into a throw-away layer over the root filesystem and
#                                    run `bash -c CMD` there, in DIR's copy, with a fresh venv active
#   pi_emu.sh status                 what is set up
#   pi_emu.sh clean                  delete the root filesystem and the runs' leftovers
#
# run OPTIONS: --timeout SECS (default 1800), --wheels-only (pip takes no sdist: a dependency
# without an aarch64 wheel fails), --offline (only loopback inside).
#
# Env: PI_EMU_DIR  where the root filesystem, runs and pip cache live (default $TMPDIR/tally-pi-emu)
#      PI_CPU      QEMU CPU model: cortex-a72 = Pi 4 (default), cortex-a76 = Pi 5, cortex-a53 = Pi 3
#      PI_MIRROR   Debian mirror (default http://deb.debian.org/debian)
# Exit: the command's status for run; 64 for a usage error; 2 when this machine cannot emulate
# (not root, no binfmt_misc); 3 when setup fails (e.g. the mirror cannot be reached).
#
# Each run has its own mount, pid, uts and ipc namespaces and an overlayfs whose upper layer is
# deleted afterwards, so runs never change the root filesystem; timeout(1) bounds it, and ending
# the run's pid namespace ends everything started inside.
set -euo pipefail

STATE=${PI_EMU_DIR:-${TMPDIR:-/tmp}/tally-pi-emu}
ROOTFS=$STATE/rootfs
READY=$ROOTFS/.tally-pi-ready
SUITE=bookworm
MIRROR=${PI_MIRROR:-http://deb.debian.org/debian}
CPU=${PI_CPU:-cortex-a72}
BINFMT=/proc/sys/fs/binfmt_misc

say() { printf 'pi_emu %(%H:%M:%S)T: %s\n' -1 "$*" >&2; }
cannot() { say "cannot emulate here: $*"; exit 2; }
usage() { say "$*"; exit 64; }
setup_failed() { say "setup failed: $*"; exit 3; }
as_root() { [ "$(id -u)" = 0 ] || cannot "needs root (binfmt_misc, chroot, namespaces)"; }

# qemu-aarch64 registered with the F flag: the kernel holds the interpreter open, so it also runs
# inside a chroot that has no qemu binary of its own
binfmt_ready() { [ -r "$BINFMT/qemu-aarch64" ] && grep -qx enabled "$BINFMT/qemu-aarch64" &&
    grep -q '^flags:.*F' "$BINFMT/qemu-aarch64"; }

host_setup() {
    local missing=() pkg
    for pkg in qemu-user-static binfmt-support debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
        say "installing ${missing[*]}"
        timeout 600 apt-get update -q >&2 || setup_failed "apt-get update"
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
            "${missing[@]}" >&2 || setup_failed "apt-get install ${missing[*]}"
    fi
    binfmt_ready && return 0
    [ -e "$BINFMT/register" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    binfmt_ready || cannot "qemu-aarch64 is not registered in binfmt_misc (a container without privileges?)"
}

# Runs argv inside root filesystem $2 for at most $1 seconds, with /proc mounted in a private namespace.
chrooted() {
    local secs=$1 root=$2
    shift 2
    timeout -k 15 "$secs" unshare --mount --pid --fork --kill-child --propagation private \
        bash -c 'mount -t proc proc "$1/proc" && root=$1 && shift && exec chroot "$root" "$@"' _ "$root" \
        /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

build_rootfs() {
    local draft=$STATE/rootfs.draft started
    started=$(date +%s)
    rm -rf --one-file-system "$draft" "$ROOTFS"
    say "debootstrap, first stage (host side)"
    timeout 1200 debootstrap --arch=arm64 --variant=minbase --foreign \
        --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$draft" "$MIRROR" \
        >"$STATE/debootstrap-1.log" 2>&1 || setup_failed "debootstrap stage 1, see $STATE/debootstrap-1.log"
    say "debootstrap, second stage (emulated: several minutes)"
    chrooted 2400 "$draft" DEBOOTSTRAP_DIR=/debootstrap /debootstrap/debootstrap --second-stage \
        >"$STATE/debootstrap-2.log" 2>&1 ||
        setup_failed "debootstrap stage 2, see $STATE/debootstrap-2.log"
    # no service may start inside; a Pi's name; the host's own CAs, should its egress re-sign TLS
    printf '#!/bin/sh\nexit 101\n' >"$draft/usr/sbin/policy-rc.d"
    chmod 755 "$draft/usr/sbin/policy-rc.d"
    echo raspberrypi >"$draft/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n' >"$draft/etc/hosts"
    mkdir -p "$draft/opt/pi" "$draft/root/.cache/pip"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$draft/usr/local/share/ca-certificates/"
        chrooted 600 "$draft" /usr/sbin/update-ca-certificates >/dev/null
    fi
    mv "$draft" "$ROOTFS"
    chrooted 300 "$ROOTFS" /usr/bin/python3 -c \
        'import platform; print(platform.machine(), "python", platform.python_version(), *platform.libc_ver())' \
        >"$READY"
    say "root filesystem ready in $(($(date +%s) - started)) s: $(cat "$READY")"
}

cmd_setup() {
    as_root
    mkdir -p "$STATE"
    exec 8>"$STATE/.lock"
    flock -w 3600 8 || setup_failed "another setup holds $STATE/.lock"
    host_setup
    [ -f "$READY" ] || build_rootfs
}

cmd_run() {
    as_root
    local secs=1800 offline=0 wheels_only=0
    while [ $# -gt 0 ]; do
        case $1 in
        --timeout) [[ "${2:-}" =~ ^[0-9]+$ ]] || usage "--timeout needs seconds"; secs=$2; shift 2 ;;
        --offline) offline=1; shift ;;
        --wheels-only) wheels_only=1; shift ;;
        -*) usage "unknown run option $1" ;;
        *) break ;;
        esac
    done
    [ $# -eq 2 ] || usage "usage: pi_emu.sh run [--timeout SECS] [--wheels-only] [--offline] DIR CMD"
    local project cmd=$2
    project=$(readlink -f "$1")
    [ -d "$project" ] || usage "no directory $1"
    [ -f "$READY" ] || cannot "not set up: run pi_emu.sh setup first"
    binfmt_ready || cannot "qemu-aarch64 is not registered in binfmt_misc (pi_emu.sh setup)"
    exec 8>"$STATE/.lock"
    flock -s -w 600 8 || cannot "a setup or clean holds $STATE/.lock"

    local run
    run=$(mktemp -d "$STATE/run.XXXXXX")
    # shellcheck disable=SC2064  # the path is fixed now
    trap "umount -R '$run/top' 2>/dev/null || true; rm -rf --one-file-system '$run'" EXIT
    mkdir -p "$run"/{upper,work,top} "$run/upper/opt/pi/project" "$STATE/pip-cache"
    # the project's files, not its venvs or caches (a venv is a folder holding pyvenv.cfg)
    tar -C "$project" --exclude-tag-all=pyvenv.cfg --exclude=.git --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$run/upper/opt/pi/project" -xf -
    cat >"$run/upper/opt/pi/start.sh" <<'EOF'
cd /opt/pi/project
python3 -m venv /opt/pi/venv || exit 3
. /opt/pi/venv/bin/activate
echo "pi_emu: $(uname -m) $(python3 -V) glibc $(getconf GNU_LIBC_VERSION | cut -d' ' -f2)" >&2
exec bash -c "$1"
EOF
    local env=(HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_DEFAULT_TIMEOUT=120
        SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
        QEMU_CPU="$CPU")
    [ "$wheels_only" = 1 ] && env+=(PIP_ONLY_BINARY=:all:)
    # Runs as pid 1 of the run's pid namespace: mounts the layers, then the command; on TERM (the
    # timeout) it ends every process inside before leaving.
    cat >"$run/inside.sh" <<EOF
set -e
top=$(printf %q "$run/top")
mount -t overlay overlay -o lowerdir=$(printf %q "$ROOTFS"),upperdir=$(printf %q "$run/upper"),workdir=$(printf %q "$run/work") "\$top"
mount -t proc proc "\$top/proc"
mount -t sysfs -o ro sysfs "\$top/sys" || true
mount -t tmpfs -o mode=1777,size=1g tmpfs "\$top/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "\$top/dev/pts" && mount --bind "\$top/dev/pts/ptmx" "\$top/dev/ptmx" || true
mount --bind $(printf %q "$STATE/pip-cache") "\$top/root/.cache/pip"
if [ $offline = 1 ]; then ip link set lo up; else cp -L /etc/resolv.conf "\$top/etc/resolv.conf"; fi
hostname raspberrypi
set +e
trap 'kill -TERM -1 2>/dev/null; sleep 3; kill -KILL -1 2>/dev/null; exit 124' TERM INT
chroot "\$top" /usr/bin/env -i $(printf '%q ' "${env[@]}") /bin/bash /opt/pi/start.sh $(printf %q "$cmd") &
wait \$!
EOF
    local net=() rc=0 started
    [ "$offline" = 1 ] && net=(--net)
    started=$(date +%s)
    say "run: cpu $CPU, timeout ${secs} s, $project: $cmd"
    timeout -k 10 "$secs" unshare --mount --uts --ipc --pid --fork --kill-child --propagation private "${net[@]}" \
        bash "$run/inside.sh" </dev/null || rc=$?
    say "run ended with exit $rc after $(($(date +%s) - started)) s$([ "$rc" = 124 ] && echo ' (timeout)')"
    return "$rc"
}

cmd_status() {
    echo "state:  $STATE"
    echo "binfmt: $(binfmt_ready && echo 'qemu-aarch64 registered' || echo 'qemu-aarch64 not registered')"
    echo "rootfs: $(cat "$READY" 2>/dev/null || echo 'not built')"
}

cmd_clean() {
    as_root
    [ -d "$STATE" ] || return 0
    exec 8>"$STATE/.lock"
    flock -w 600 8 || cannot "a run holds $STATE/.lock"
    rm -rf --one-file-system "$ROOTFS" "$STATE"/rootfs.draft "$STATE"/run.*
    say "removed the root filesystem (the binfmt registration stays: update-binfmts --disable qemu-aarch64)"
}

case ${1:-} in
setup | run | status | clean) cmd=$1; shift; "cmd_$cmd" "$@" ;;
*) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
