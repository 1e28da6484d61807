#!/bin/sh
# Update the signatures, keep them updated in the background, run clamd in the foreground.
# The signatures live on a volume: a restart reuses them, and freshclam failing (no network,
# rate limited) is fatal only when there is nothing to start with.
set -eu

db=/var/lib/clamav

if ! freshclam --stdout; then
    if ls "$db"/main.c[lv]d "$db"/daily.c[lv]d >/dev/null 2>&1; then
        echo "clamd: freshclam failed; starting with the signatures already in $db" >&2
    else
        echo "clamd: freshclam failed and $db holds no signatures; clamd cannot start" >&2
        exit 1
    fi
fi

# Checks for new signatures 12 times a day, logging to the container's output; clamd's
# SelfCheck loads what it downloads.
freshclam --stdout --daemon --foreground &

exec clamd --foreground "$@"
