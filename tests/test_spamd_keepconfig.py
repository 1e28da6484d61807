"""mailscan's spamd plugin (mailserver/supervisor/spamassassin/KeepConfig.pm): spamd's
configuration is copied back after a connection only when that connection loaded a user's
own settings. Checked against the SpamAssassin library and the spamd of this machine, whose
internals it relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mailserver.supervisor.service import binary
from mailserver.supervisor.services import KEEP_CONFIG_FILE

ROOT = Path(__file__).resolve().parent.parent

# What spamd does around each connection, in the order it does it: the backup at start, a
# connection that changes the configuration without loading user settings, one that loads a
# user's user_prefs, and a third like the first. After each, spamd's copy back; the script
# prints the required score the next connection would run with.
CONNECTIONS = r"""
use strict; use warnings;
use Mail::SpamAssassin;
my ($plugin, $home) = @ARGV;
my $sa = Mail::SpamAssassin->new({
  local_tests_only => 1, dont_copy_prefs => 1, userprefs_filename => "$home/none",
  post_config_text => "bayes_path $home/bayes\n",
});
$sa->init(0);
my %backup;
$sa->copy_config(undef, \%backup) or die "no backup";
if ($plugin) { require $plugin; Mailscan::KeepConfig::keep_config() or die "not kept" }
sub after {
  $sa->copy_config(\%backup, undef) or die "no copy";
  print "$_[0] $sa->{conf}->{required_score}\n";
}
$sa->{conf}->{required_score} = 7;
after("changed");
open my $prefs, '>', "$home/user_prefs" or die; print $prefs "required_score 3\n"; close $prefs;
$sa->read_scoreonly_config("$home/user_prefs");
print "loaded $sa->{conf}->{required_score}\n";
after("user");
$sa->{conf}->{required_score} = 7;
after("changed-again");
"""


def connections(tmp_path: Path, plugin: Path | None) -> dict[str, float]:
    script = tmp_path / "connections.pl"
    script.write_text(CONNECTIONS)
    argv = ["perl", str(script), str(plugin or ""), str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return {
        name: float(score)
        for name, score in (line.split() for line in done.stdout.split("\n") if line)
    }


@pytest.mark.integration
def test_spamd_alone_copies_its_configuration_back_after_every_connection(tmp_path):
    scores = connections(tmp_path, None)
    assert scores == {"changed": 5.0, "loaded": 3.0, "user": 5.0, "changed-again": 5.0}


@pytest.mark.integration
def test_with_the_plugin_only_a_users_own_settings_are_copied_away(tmp_path):
    scores = connections(tmp_path, KEEP_CONFIG_FILE)
    # No user settings loaded: nothing copied. A user's settings apply to their connection
    # alone, and the next connection without them is again left as it is.
    assert scores == {"changed": 7.0, "loaded": 3.0, "user": 5.0, "changed-again": 7.0}


@pytest.mark.integration
def test_this_spamd_restores_and_loads_user_settings_as_the_plugin_expects():
    """The spamd internals the plugin relies on: it calls the children's init hook, copies
    its configuration back through ``copy_config`` and loads a user's settings only through
    the methods the plugin watches. A spamd that changes any of these fails here."""
    spamd = Path(binary("spamd", "spamd")).read_text()
    assert 'call_plugins("spamd_child_init")' in spamd
    assert "copy_config(\\%conf_backup, undef)" in spamd
    watched = set(
        re.findall(r"my @USER_SETTINGS = qw\((.*?)\);", KEEP_CONFIG_FILE.read_text())[0].split()
    )
    loads = set(re.findall(r"\$spamtest->(\w*(?:config|scoreonly)\w*)\(", spamd))
    assert loads - {"copy_config"} == watched


@pytest.mark.integration
def test_the_spamd_mailscan_starts_keeps_its_configuration(stack):
    log = (stack.log_dir / "spamd.log").read_text(errors="replace")
    assert "keepconfig: configuration copied back only after a user's own settings" in log
    assert "keepconfig: SpamAssassin has no" not in log


def test_the_spamd_image_loads_the_plugin_it_copies():
    dockerfile = (ROOT / "docker" / "spamd" / "Dockerfile").read_text()
    copied = re.search(r"COPY \S+ (\S+/KeepConfig\.pm) (\S+/)", dockerfile)
    assert copied, "the spamd image does not copy KeepConfig.pm"
    assert (ROOT / copied[1]).resolve() == KEEP_CONFIG_FILE
    assert f"--cf=loadplugin Mailscan::KeepConfig {copied[2]}KeepConfig.pm" in dockerfile
