"""The milter front: Postfix (``smtpd_milters``) asks it for a verdict at the end of each
message, the pre-queue pipeline decides, and Postfix acts on the answer."""
