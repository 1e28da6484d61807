#!/bin/sh
# How many children spamd starts, printed: MAILSCAN_SPAMD_CHILDREN when set, else what
# mailscan's own sizing chooses (tasks/sizing.py): the CPUs this container may use, fewer
# when its cgroup's CPU quota allows fewer (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us over
# cpu.cfs_period_us), a fraction of a CPU counting as a whole one. spamd's children are
# CPU-bound: more of them only make each message cost more CPU.
# In a container its own cgroup is the root of the cgroup folder given (default
# /sys/fs/cgroup), so the quota is read there.
set -eu

if [ -n "${MAILSCAN_SPAMD_CHILDREN:-}" ]; then
    echo "$MAILSCAN_SPAMD_CHILDREN"
    exit 0
fi
root=${1:-/sys/fs/cgroup}
count=$(nproc)

# lower QUOTA PERIOD: fewer children when the quota allows fewer CPUs than $count.
lower() {
    case "${1:-max}" in max | -* | *[!0-9]*) return 0 ;; esac
    case "${2:-0}" in 0 | *[!0-9]*) return 0 ;; esac
    [ "$1" -gt 0 ] || return 0
    cpus=$((($1 + $2 - 1) / $2))
    if [ "$cpus" -lt "$count" ]; then count=$cpus; fi
}

if [ -r "$root/cpu.max" ]; then
    # shellcheck disable=SC2046 # two fields: QUOTA PERIOD
    lower $(cat "$root/cpu.max")
fi
for v1 in "$root/cpu,cpuacct" "$root/cpu"; do
    if [ -r "$v1/cpu.cfs_quota_us" ]; then
        lower "$(cat "$v1/cpu.cfs_quota_us")" "$(cat "$v1/cpu.cfs_period_us" 2>/dev/null || true)"
    fi
done
echo "$count"
