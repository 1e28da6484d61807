"""The mail side of mailscan: SMTP front, spool, dispatch, policy, delivery, command line."""
