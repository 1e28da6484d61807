"""The pool side of mailscan: the scan tasks, the runner and its guards, the plugins, and the
contract every process shares (``tasks.wire``). Importing this package builds nothing:
``celery -A tasks`` finds the app in ``tasks.celery``."""
