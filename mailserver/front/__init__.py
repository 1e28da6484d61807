"""The SMTP front: admission, the SMTP session, the spool, the scan jobs' dispatch and their
verdicts, policy, headers, delivery, quarantine, the re-driver and the metrics."""
