"""The patterns the scrubber looks for in free text, and what each becomes.

Only the details a report carries on request pass through these; the default report carries
no free text at all (tasks/crashes/summary.py). A pattern catches the forms named next to
it and no others: that is the limit of what a deny-list can promise.
"""

from __future__ import annotations

import re

SUBJECT_MASK = "[subject removed]"
IP_MASK = "[ip]"
HOST_MASK = "[host]"
BODY_MASK = "[message content removed]"
VALUE_MASK = "[value removed]"
FILE_MASK = "[file name]"
BASE64_MASK = "[base64 removed]"
SCANNER_MASK = "[scanner output removed]"

# --- addresses ---------------------------------------------------------------------------
# The local part: RFC 5322 atext and dots, or a quoted string of any length (folded or not);
# a quoted-printable soft line break may fall anywhere in it. An unquoted one starts where a
# run of its characters starts, so that each run is tried once.
_SOFT_BREAK = r"=(?:\r?\n|\\r\\n|\\n)"
_ATEXT = r"\w.!#$%&'*+/=?^`{|}~-"
_LOCAL = (
    rf"""(?:"(?:[^"\\]|\\.){{0,1000}}"|(?<![{_ATEXT}])(?:[{_ATEXT}]|{_SOFT_BREAK}){{1,1000}})"""
)
# "@" and the ways it is written when escaped or encoded: URL-encoded (once or more),
# HTML entities, backslash escapes (hex, unicode, octal), fullwidth and small forms.
_AT = (
    r"(?:@|\uff20|\ufe6b|%(?:25)*40|&#0*64;?|&#x0*40;?|&commat;"
    r"|\\+x40|\\+u0040|\\+U00000040|\\+100|\\+N\{COMMERCIAL AT\})"
)
# Around the "@": a line break (folded header, wrapped text), in plain or escaped form (once
# or more: the repr of a repr doubles the backslashes).
_GAP = r"(?:[ \t]|\r?\n|\\+r|\\+n|\\+t|" + _SOFT_BREAK + r"){0,6}"
_LABEL = r"(?:[\w-]|" + _SOFT_BREAK + r")+"
_DOMAIN = r"(?:\[[^\]\s]{1,64}\]|" + _LABEL + r"(?:[.\uff0e\u3002]" + _LABEL + r")*)"
EMAIL = re.compile(rf"{_LOCAL}(?:{_GAP}{_AT}{_GAP}{_DOMAIN})+", re.IGNORECASE)
AT_SIGN = re.compile(_AT, re.IGNORECASE)

# Non-ASCII text in the repr of bytes: read as the characters it stands for, so that the
# patterns (a fullwidth "@", a subject's words) see them.
ESCAPED_UTF8 = re.compile(r"(?:\\x[89a-fA-F][0-9a-fA-F])+")

# --- headers, subjects and bodies --------------------------------------------------------
KNOWN_HEADERS = (
    "from", "to", "cc", "bcc", "reply-to", "sender", "subject", "date", "received",
    "return-path", "message-id", "in-reply-to", "references", "mime-version", "thread-topic",
    "delivered-to", "envelope-to", "x-original-to", "content-type", "content-disposition",
    "content-transfer-encoding", "content-description", "content-id",
)  # fmt: skip
_HEADER_NAME = r"[A-Za-z][A-Za-z0-9-]{0,75}"
_HEADER_LINE = rf"{_HEADER_NAME}[ \t]*:.*(?:\r?\n[ \t]+\S.*)*(?:\r?\n|\Z)"
_KNOWN = "|".join(re.escape(h) for h in KNOWN_HEADERS)
# Two header lines or more (of any names), or one of a message's own: a header block. The
# first may follow the exception's name on the last line of a traceback.
_AFTER_EXCEPTION = r"(?:[\w.]{1,200}:[ \t]+)?"
HEADER_BLOCK = re.compile(
    rf"(?m)^{_AFTER_EXCEPTION}(?:{_HEADER_LINE}(?:{_HEADER_LINE})+|(?i:{_KNOWN}|x-[\w-]+)"
    r"[ \t]*:.*(?:\r?\n[ \t]+\S.*)*(?:\r?\n|\Z))"
)
# A header block, then a blank line: a message or a MIME part; its content goes with it.
BLANK_LINE = re.compile(r"\r?\n")
# The same in escaped form (the repr of a str or bytes): two header lines, or a header line
# and an escaped blank line.
_ESC_NL = r"(?:\\r)?\\n"
ESCAPED_HEADERS = re.compile(
    rf"(?:^|{_ESC_NL}|['\"]){_HEADER_NAME}[ \t]*:[^\n]*?{_ESC_NL}(?:{_ESC_NL}|{_HEADER_NAME}:)"
)
# "Subject:" anywhere it starts a header, to the end of the line, with its folded lines.
SUBJECT_LINE = re.compile(
    r"(?im)((?:^|(?<=[\s:'\"(\[{,;>])|(?<=\\[nrt]))(?:subject|thread-topic)[ \t]*:[ \t]*)"
    r"[^\r\n]*"
    r"(?:\r?\n[ \t]+(?!File \")\S[^\r\n]*)*"
)
# A quoted value in a repr, maybe a repr inside another (its quotes then escaped): it ends
# at a quote escaped as its opening one was.
_QUOTED = r"""b?(\\*)(['"])(?:\\.|(?!{0}).)*?{0}"""
# subject='...' (keyword arguments, attributes in a repr), quoted or up to the next comma.
SUBJECT_ARGUMENT = re.compile(
    r"(?i)\b((?:subject|thread_topic)\s*=\s*)(?:" + _QUOTED.format(r"\2\3") + r"|[^,;)\r\n]+)"
)
# ('Name', 'value') and 'Name': 'value' of a header (str or bytes): the value goes. A header
# is a known name, or a hyphenated one (X-Mailer, Content-Disposition).
_PAIR_NAME = rf"(?:{_KNOWN}|[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+)"
HEADER_PAIR = re.compile(
    rf"""(?i)(b?\\*['"]{_PAIR_NAME}\\*['"]\s*[:,]\s*)""" + _QUOTED.format(r"\2\3")
)
# Attachment names: MIME parameters, and names with the extensions attachments have.
FILE_PARAMETER = re.compile(
    r"""(?i)((?:\bfilename|;\s*name)\*?(?:\d+\*?)?\s*=\s*)(?:"(?:\\.|[^"\\])*"|'[^']*'|[^;\s,]+)"""
)
_EXTENSIONS = (
    "pdf|docx?|docm|xlsx?|xlsm|pptx?|odt|ods|odp|rtf|txt|csv|zip|rar|7z|gz|tgz|bz2|xz|tar|"
    "iso|img|exe|dll|scr|bat|vbs|jar|msi|apk|html?|eml|ics|vcf|jpe?g|png|gif|bmp|tiff?|"
    "heic|svg|mp3|mp4|mov|avi|wav|lnk|hta|ps1"
)
_NOT_IN_NAME = r"""\s"'/\\:;,<>=()\[\]{}|*?"""
FILE_NAME = re.compile(rf"(?i)(?<![^{_NOT_IN_NAME}])[^{_NOT_IN_NAME}]+\.(?:{_EXTENSIONS})(?![\w-])")
# Base64 of 40 characters or more, unless it is the local part of an address.
BASE64_RUN = re.compile(
    rf"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{{40,}}={{0,2}}(?![A-Za-z0-9+/=])(?!{_GAP}{_AT})"
)
# What the command plugin puts after this is the scanner's own output (file names).
SCANNER_OUTPUT = re.compile(r"(scanner exited with -?\d+:)[\s\S]*")

# --- addresses of machines ---------------------------------------------------------------
IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Generic and country top-level domains. "py" is left out on purpose: every Python file name
# would read as a host name.
GENERIC_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|name|pro|aero|coop|museum|mobi|asia|tel|travel|"
    "jobs|arpa|app|dev|cloud|email|online|site|tech|store|shop|xyz|top|club|space|website|"
    "link|live|blog|news|host|group|mail|test|example|invalid|localhost|local|localdomain|"
    "lan|internal|home|corp"
)
COUNTRY_TLDS = (
    "ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo "
    "br bs bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm "
    "do dz ec ee eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs "
    "gt gu gw gy hk hm hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km "
    "kn kp kr kw ky kz la lb lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp "
    "mq mr ms mt mu mv mw mx my mz na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk "
    "pl pm pn pr ps pt pw qa re ro rs ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st "
    "su sv sx sy sz tc td tf tg th tj tk tl tm tn to tr tt tv tw tz ua ug uk us uy uz va vc "
    "ve vg vi vn vu wf ws ye yt za zm zw"
).replace(" ", "|")
HOST_NAME = re.compile(
    r"(?<![\w.-])(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    rf"(?:{GENERIC_TLDS}|{COUNTRY_TLDS})\.?(?![\w-]|\.[a-z0-9])",
    re.IGNORECASE,
)
