"""Every Redis key, queue and task name mailscan uses, in one place."""

AV_POOL = "av"
SPAM_POOL = "spam"
POOLS = (AV_POOL, SPAM_POOL)
# Maintenance (beat's periodic tasks, crash report uploads) has a small worker of its own,
# so it never takes a slot from scanning and scanning never delays it.
OPS_QUEUE = "ops"
QUEUES = (*POOLS, OPS_QUEUE)

SCAN_TASKS = {AV_POOL: "tasks.scan.av", SPAM_POOL: "tasks.scan.spam"}
HEALTH_TASKS = {AV_POOL: "tasks.health.av", SPAM_POOL: "tasks.health.spam"}
# Teaching spamd's Bayes a message as spam or ham; run by the spam pool, the only client
# spamd lets learn (args: "spam" or "ham", the message bytes; result: LearnResult).
LEARN_TASK = "tasks.learn.spamd"

BLOB_KEY = "mailscan:blob:{blob_id}"
HEALTH_KEY = "mailscan:health"
# Celery's Redis result backend stores each result under this prefix and publishes it on a
# channel of the same name; the mailserver waits on that channel instead of polling.
RESULT_KEY_PREFIX = "celery-task-meta-"

ENV_PREFIX = "MAILSCAN_"

# Isolation: poison-message attempts (hash: plugin -> attempts) and circuit breakers.
ATTEMPTS_KEY = "mailscan:attempts:{message}"
POISON_KEY = "mailscan:poison:{origin}"
BREAKER_FAILURES_KEY = "mailscan:breaker:{plugin}:failures"
BREAKER_OPEN_KEY = "mailscan:breaker:{plugin}:open"
BREAKER_PROBE_KEY = "mailscan:breaker:{plugin}:probe"
# Set when an opening of the breaker was announced as an alert; its removal announces the
# closing (the open key itself expires with the cooldown, unannounced).
BREAKER_ALERTED_KEY = "mailscan:breaker:{plugin}:alerted"

# Crashdumps: one JSON record per key, indexes by time, groups by signature.
CRASHDUMP_KEY = "mailscan:crashdump:{id}"
CRASHDUMP_INDEX = "mailscan:crashdumps"
# The crashdump records of failures on a message's path (a set, by its blob id = spool id).
CRASHDUMPS_OF_MESSAGE_KEY = "mailscan:crashdumps:message:{blob_id}"
CRASHGROUP_KEY = "mailscan:crashgroup:{signature}"
CRASHGROUP_INDEX = "mailscan:crashgroups"
# Taken by the first incident of a signature in each window: only that one keeps a full record.
CRASHGROUP_WINDOW_KEY = "mailscan:crashgroup:{signature}:window:{window}"
AVCACHE_KEY = "mailscan:avcache:{engine}:{content}"
BEAT_LOCK_KEY = "mailscan:beat:lock"
# Observability: per-plugin counters and latency buckets, queue snapshots, spool reports.
METRICS_SCANS_KEY = "mailscan:metrics:scans"
METRICS_LATENCY_KEY = "mailscan:metrics:latency:{plugin}"
STATS_KEY = "mailscan:stats:{queue}"
SPOOL_REPORT_KEY = "mailscan:spool"
ALARMS_KEY = "mailscan:alarms"
AUTOSCALE_KEY = "mailscan:autoscale"
CRASHDUMP_ONCE_KEY = "mailscan:crashdump:once:{job_id}:{pid}"

# Outcomes of messages for the console: a capped list of the latest (JSON, newest first) and
# per-minute counters by verdict (hash: verdict -> count), kept two hours.
OUTCOMES_KEY = "mailscan:outcomes"
OUTCOMES_MINUTE_KEY = "mailscan:outcomes:minute:{minute}"

# Crash reports: the decision on each crashdump (hash: id -> JSON), the remembered choice per
# signature (hash: signature -> always | never), and the audit log of decisions and uploads.
ASSIST_STATE_KEY = "mailscan:assist:state"
ASSIST_CHOICE_KEY = "mailscan:assist:choice"
ASSIST_AUDIT_KEY = "mailscan:assist:audit"
UPLOAD_TASK = "tasks.ops.upload_crash_report"

# The admin console: one record per logged-in session (JSON, expiring with the session's
# absolute lifetime), keyed by a digest of the id the cookie carries; failed logins counted
# per client address and per name (hash: count, last), keyed by a digest of either.
CONSOLE_SESSION_KEY = "mailscan:console:session:{digest}"
CONSOLE_LOGIN_FAILURES_KEY = "mailscan:console:login-failures:{by}:{digest}"

# Alerts for the administrator: every process appends events to a capped stream (the
# console shows its latest); beat's dispatcher reads on from its cursor, keeps each kind's
# rate-limit window (hash: kind -> JSON) and the notices still to send (hash: id -> JSON),
# and runs under a lock so two runs never send the same notice.
ALERTS_KEY = "mailscan:alerts"
ALERTS_CURSOR_KEY = "mailscan:alerts:cursor"
ALERTS_WINDOWS_KEY = "mailscan:alerts:windows"
ALERTS_OUTBOX_KEY = "mailscan:alerts:outbox"
ALERTS_LOCK_KEY = "mailscan:alerts:lock"
