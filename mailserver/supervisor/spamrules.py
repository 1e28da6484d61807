"""Whether the spamd that mailscan starts runs SpamAssassin's body rules compiled to native code.

Debian's ``sa-compile`` package compiles the body rules (re2c, then a C compiler) when it is
installed and loads them in every SpamAssassin through a ``.pre`` file of the site
configuration (the Rule2XSBody plugin). Verdicts stay the same; spamd needs less CPU per
message, most on large text. ``scripts/bootstrap`` installs it; this
check only tells the operator which way spamd runs, from the files SpamAssassin reads.
"""

from __future__ import annotations

import re
from pathlib import Path

SITE_CONFIG = Path("/etc/spamassassin")
COMPILED_RULES = Path("/var/lib/spamassassin/compiled")
_LOADS_PLUGIN = re.compile(
    r"^[ \t]*loadplugin[ \t]+Mail::SpamAssassin::Plugin::Rule2XSBody\b", re.MULTILINE
)
# sa-compile writes one Perl module per rule set under <perl version>/<SpamAssassin version>/.
_COMPILED_MODULES = "*/*/Mail/SpamAssassin/CompiledRegexps/*.pm"


def body_rules_compiled(site: Path = SITE_CONFIG, compiled: Path = COMPILED_RULES) -> bool:
    """True when the plugin is loaded and a compiled rule set is there for it to use."""
    return _step_missing(site, compiled) is None


def body_rules_note(site: Path = SITE_CONFIG, compiled: Path = COMPILED_RULES) -> str:
    """A few words for ``mailscan up``'s summary, with what to do when they are not compiled."""
    step = _step_missing(site, compiled)
    return "body rules compiled" if step is None else f"body rules not compiled: {step}"


def files_loading_plugin(site: Path = SITE_CONFIG) -> list[Path]:
    """The ``.pre`` files of the site configuration that load the plugin."""
    return [pre for pre in sorted(site.glob("*.pre")) if _loads_plugin(pre)]


def _step_missing(site: Path, compiled: Path) -> str | None:
    """What the operator has to do for spamd to run compiled body rules; None: nothing."""
    if not files_loading_plugin(site):
        return "install the sa-compile package to scan faster"
    if not any(compiled.glob(_COMPILED_MODULES)):
        # The package is there but its rule set is not (a failed compile, a new Perl): the
        # package's own step compiles it and leaves it readable to spamd's children.
        return "run dpkg-reconfigure sa-compile to scan faster"
    return None


def _loads_plugin(pre: Path) -> bool:
    try:
        return bool(_LOADS_PLUGIN.search(pre.read_text(errors="replace")))
    except OSError:
        return False  # unreadable to us means unknown; another file may still say it
