"""Debian's amavisd-new as a benchmark path: the SMTP proxy a classic set-up puts behind its
MTA, with its embedded SpamAssassin and the stack's clamd, handing what it accepts to a next
hop (bench/nexthop.py). It keeps amavisd's own defaults for its children (``$max_servers``
2, ``$max_requests`` 20) unless told otherwise, and Debian's SpamAssassin size limit."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from bench.stacks import LOOPBACK, BenchStack, listening
from mailserver.supervisor.services import Service

CLASSIC = "amavisd"
# Debian's /etc/amavis/conf.d/20-debian_defaults: SpamAssassin sees at most this much.
DEBIAN_SA_BODY_LIMIT = 200 * 1024


def amavisd_service(
    bench: BenchStack,
    amavisd: str,
    port: int,
    next_hop: int,
    children: int | None = None,
    virus_destiny: str = "D_REJECT",
    sa_body_limit: int = DEBIAN_SA_BODY_LIMIT,
) -> Service:
    """amavisd on ``port``, handing what it passes to ``next_hop``; its home in the stack's
    folder. ``children``: None keeps amavisd's default. ``virus_destiny``: D_REJECT before
    the queue, D_DISCARD behind Postfix's ``content_filter`` (a refusal there becomes a
    bounce). ``sa_body_limit``: the most of a message its SpamAssassin sees."""
    home = bench.settings.var_dir / "amavisd"
    conf = write_conf(home, bench, port, next_hop, children, virus_destiny, sa_body_limit)
    return Service(
        CLASSIC,
        [amavisd, "-c", str(conf), "foreground"],
        listening(port),
        port,
        ready_timeout_s=180.0,  # it compiles SpamAssassin's rules before it listens
    )


def write_conf(
    home: Path,
    bench: BenchStack,
    port: int,
    next_hop: int,
    children: int | None,
    virus_destiny: str = "D_REJECT",
    sa_body_limit: int = DEBIAN_SA_BODY_LIMIT,
) -> Path:
    """amavisd's configuration and its home (owned by its user when we are root)."""
    for folder in ("tmp", "db", "var"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    user = "amavis" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        for folder in (home, *home.iterdir()):
            shutil.chown(folder, user, user)
    clamd = bench.settings.clamd
    # Beside its home, not in it: amavisd refuses a configuration its own user could change.
    conf = home.with_name("amavisd.conf")
    conf.write_text(
        CONF.format(
            home=home,
            user=user,
            children="" if children is None else f"$max_servers = {children};",
            loopback=LOOPBACK,
            port=port,
            next_hop=next_hop,
            clamd=clamd.socket_path or f"{clamd.host}:{clamd.port}",
            sa_body_limit=sa_body_limit,
            virus_destiny=virus_destiny,
        )
    )
    return conf


CONF = """use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$helpers_home = "$MYHOME/var";
$pid_file = "$MYHOME/amavisd.pid";
$lock_file = "$MYHOME/amavisd.lock";
$daemon_user = '{user}'; $daemon_group = '{user}';
{children}
$myhostname = 'bench.localdomain'; $mydomain = 'localdomain';
@mynetworks = qw(127.0.0.0/8);
@local_domains_maps = (1);
$inet_socket_bind = '{loopback}'; $inet_socket_port = {port}; @inet_acl = qw({loopback});
$forward_method = 'smtp:[{loopback}]:{next_hop}'; $notify_method = $forward_method;
$DO_SYSLOG = 0; $LOGFILE = "$MYHOME/amavis.log"; $log_level = 0;
$enable_db = 0; $enable_zmq = 0; $nanny_details_level = 0;
$enable_dkim_verification = 0; $enable_dkim_signing = 0;
$sa_local_tests_only = 1; $sa_mail_body_size_limit = {sa_body_limit};
$sa_tag_level_deflt = -999; $sa_tag2_level_deflt = 5.0; $sa_kill_level_deflt = 9999;
$final_virus_destiny = {virus_destiny}; $final_banned_destiny = D_PASS;
$final_spam_destiny = D_PASS; $final_bad_header_destiny = D_PASS;
$virus_quarantine_method = undef; $spam_quarantine_method = undef;
$banned_files_quarantine_method = undef; $bad_header_quarantine_method = undef;
$virus_admin = undef; $spam_admin = undef;
@av_scanners = (['ClamAV-clamd', \\&ask_daemon, ["CONTSCAN {{}}\\n", "{clamd}"],
  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);
@av_scanners_backup = ();
1;
"""
