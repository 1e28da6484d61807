"""``mailscan learn spam|ham FILE|ID ...``: teach spamd's Bayes from the command line, as the
console's quarantine buttons do. A file is only learnt. A quarantine id gets the whole
action: ham is learnt and released ("Not spam: release"), spam is learnt and deleted
("Spam: confirm"), each recorded in the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mailserver.console import learning
from mailserver.console.commands import login_name
from mailserver.console.quarantined import QUARANTINE_ID
from mailserver.front.delivery import delivery_for
from mailserver.front.quarantine import Quarantine
from mailserver.front.server import check_redis
from tasks.celery import app
from tasks.errors import LearnFailed, MailscanError, NotQuarantined
from tasks.settings import Settings


def learn(settings: Settings, message_class: str, targets: list[str]) -> Iterator[str]:
    """One line per target, said as it is done; the first failure ends the run."""
    client = check_redis(settings)  # one clear line when Redis is away, before any job
    teacher = learning.Teacher(settings, app)
    quarantine = Quarantine(settings.quarantine_dir)
    by = f"{login_name()} (terminal)"
    for target in targets:
        if QUARANTINE_ID.match(target) and not Path(target).exists():
            try:
                if message_class == "ham":
                    delivery = delivery_for(settings)
                    yield learning.not_spam(quarantine, delivery, teacher, client, target, by)
                else:
                    yield learning.confirm_spam(quarantine, teacher, client, target, by)
            except NotQuarantined:
                raise MailscanError(f"{target}: no such message in the quarantine") from None
            continue
        try:
            lesson = teacher.teach(message_class, _read(Path(target)))
        except LearnFailed as err:  # of many files, the one it was
            raise LearnFailed(f"{target}: {err}") from None
        yield f"{target}: {lesson.text()}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise MailscanError(
            f"{path}: {err.strerror} (neither a readable file nor a quarantine id)"
        ) from err
