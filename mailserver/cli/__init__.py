"""The ``mailscan`` command line (``python -m mailserver.cli``)."""
