"""The contract between the SMTP front and the pools, typed, in one place: Redis keys and
queue names, scan job ids, the job envelope written for kombu, the message bytes (blobs and
the spool file), the verdict record, and the fleet state the front reads. It imports nothing
of mailscan above it but the error tree."""
