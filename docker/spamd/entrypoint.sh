#!/bin/sh
# Fetch the current SpamAssassin rules (unless SA_UPDATE=no), then run spamd in the foreground
# with the options given as arguments. Without network the rules shipped in the package are used.
set -eu

if [ "${SA_UPDATE:-yes}" != no ]; then
    # 0: new rules installed, 1: already current, anything else: keep what we have.
    status=0
    runuser -u debian-spamd -- sa-update || status=$?
    if [ "$status" -gt 1 ]; then
        echo "spamd: sa-update failed (exit $status); using the rules already installed" >&2
    fi
    # New rules: compile them too. If that fails, the rules compiled before still serve the
    # body rules that did not change; the rest run uncompiled, with the same verdicts.
    if [ "$status" -eq 0 ] && command -v sa-compile >/dev/null; then
        runuser -u debian-spamd -- sa-compile --quiet \
            || echo "spamd: sa-compile failed; new body rules run uncompiled" >&2
    fi
fi

# Children as mailscan sizes them (spamd-children), all started at once as `mailscan up`
# starts them, so none is forked under load. Options given as arguments come after, and win.
children=$(spamd-children)
why="the CPUs this container may use; MAILSCAN_SPAMD_CHILDREN unset"
if [ -n "${MAILSCAN_SPAMD_CHILDREN:-}" ]; then why="MAILSCAN_SPAMD_CHILDREN=$children"; fi
echo "spamd: $children children ($why)" >&2

# spamd binds as root, then serves as debian-spamd (--username): it refuses to scan as root.
# Only these addresses may connect, and so learn: this container (its healthcheck) by default.
exec spamd "--allowed-ips=${SPAMD_ALLOWED_IPS:-127.0.0.1}" \
    "--min-children=$children" "--max-children=$children" "$@"
