"""The mail side of mailscan, folder by concern: ``front`` (the SMTP front and a message's
path to its outcome), ``cli`` (the ``mailscan`` command), ``supervisor`` (the local system
without Docker) and ``console`` (the admin console)."""
