# A SpamAssassin plugin for spamd, loaded by mailscan (mailserver/supervisor/services.py and
# docker/spamd). After every connection spamd copies its whole configuration back from the
# backup it took at start, in case the connection loaded a user's own settings (user_prefs,
# SQL or LDAP). mailscan runs spamd with --nouser-config: nothing loads them, the copy changes
# nothing, yet it is a large part of spamd's work on small mail. In each child this plugin
# lets the copy happen only after a connection that did load a user's settings: the answers
# stay the same (tests/test_spamd_keepconfig.py).
package Mailscan::KeepConfig;

use strict;
use warnings;

use Mail::SpamAssassin::Logger;
use Mail::SpamAssassin::Plugin;

our @ISA = qw(Mail::SpamAssassin::Plugin);

# The methods through which spamd loads a user's own settings into the configuration.
my @USER_SETTINGS = qw(read_scoreonly_config load_scoreonly_sql load_scoreonly_ldap);

sub new {
  my ($class, $main) = @_;
  my $self = $class->SUPER::new($main);
  return bless $self, $class;
}

# Called by spamd in each child, after it dropped root, before its first connection.
sub spamd_child_init {
  my ($self) = @_;
  keep_config();
  return;
}

sub keep_config {
  no strict 'refs';
  my @missing = grep { !defined &{"Mail::SpamAssassin::$_"} } ('copy_config', @USER_SETTINGS);
  if (@missing) {
    warn "keepconfig: SpamAssassin has no @missing: spamd copies its configuration back "
      . "after every connection\n";
    return 0;
  }
  my $user_settings_loaded = 0;
  no warnings 'redefine';
  for my $name (@USER_SETTINGS) {
    my $load = \&{"Mail::SpamAssassin::$name"};
    *{"Mail::SpamAssassin::$name"} = sub { $user_settings_loaded = 1; return $load->(@_) };
  }
  my $copy = \&Mail::SpamAssassin::copy_config;
  *Mail::SpamAssassin::copy_config = sub {
    my (undef, $source, $dest) = @_;
    my $restore = defined $source && !defined $dest;  # the backup back into the running one
    return $copy->(@_) if !$restore;
    return 1 if !$user_settings_loaded;
    my $copied = $copy->(@_);
    $user_settings_loaded = 0 if $copied;
    return $copied;
  };
  info("keepconfig: configuration copied back only after a user's own settings were loaded");
  return 1;
}

1;
