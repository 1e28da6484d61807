"""The banned-attachment engine on its own: which attachments it refuses (name, type by the
bytes, archives at any depth, encryption) and that hostile archives end within its bounds."""

from __future__ import annotations

import base64
import io
import time
import tracemalloc
import zipfile

import pytest

from tasks.attachments import inspection
from tasks.attachments.inspection import Inspector, Rules, attachments
from tasks.attachments.names import name_rule
from tasks.attachments.seen import MAX_NAMES
from tasks.errors import ConfigError
from tasks.plugins.banned import BannedPlugin
from tasks.settings import load_settings
from tasks.wire.verdicts import EngineVerdict
from tests.attachment_samples import (
    PDF,
    PNG,
    encrypted_zip,
    many_files_zip,
    nested_zips,
    rar5,
    seven_zip,
    tar_gz,
    tar_gz_bomb,
    windows_executable,
    with_attachment,
    zipped,
)
from tests.conftest import make_message

DEFAULTS = load_settings({})


def scan(name: str, data: bytes, content_type: str = "application/octet-stream", **env: str):
    settings = load_settings({f"MAILSCAN_{k.upper()}": v for k, v in env.items()})
    plugin = BannedPlugin(settings=settings)
    return plugin.scan(with_attachment(name, data, content_type).as_bytes())


def refused(verdict) -> tuple[str | None, str]:
    assert verdict.status == "banned", verdict
    return verdict.part, verdict.rules[0]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("setup.exe", "extension .exe"),
        ("INVOICE.PDF.EXE", "double extension .pdf.exe"),
        ("invoice.pdf    .scr", "double extension .pdf.scr"),
        ("run.js. ", "extension .js"),  # Windows drops the trailing dot and blank
        ("dir/sub\\start.bat", "extension .bat"),
        ("readme.txt.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}", "Windows class id name"),
        ("report.pdf", None),
        ("backup.tar.gz", None),
        ("exe", None),
        ("notes.exe.txt", None),
    ],
)
def test_name_rules(name, rule):
    assert name_rule(name, frozenset(DEFAULTS.banned_extensions)) == rule


def test_a_double_extension_is_refused_naming_the_part():
    assert refused(scan("invoice.pdf.exe", b"MZ")) == (
        "invoice.pdf.exe",
        "double extension .pdf.exe",
    )


def test_an_exe_in_a_zip_in_a_zip_is_refused_with_its_path():
    archive = zipped("inner.zip", zipped("tool.exe", b"not really"))
    assert refused(scan("outer.zip", archive)) == ("outer.zip/inner.zip/tool.exe", "extension .exe")


def test_a_windows_executable_is_known_by_its_bytes_not_its_name_or_declared_type():
    part, rule = refused(scan("photo.jpg", windows_executable(), "image/jpeg"))
    assert part == "photo.jpg"
    assert rule == "content type application/vnd.microsoft.portable-executable"
    # Inside an archive under a harmless name too.
    part, _ = refused(scan("photos.zip", zipped("holiday.jpg", windows_executable())))
    assert part == "photos.zip/holiday.jpg"


def test_an_encrypted_archive_is_refused_unless_allowed():
    archive = encrypted_zip("salaries.xlsx", b"figures")
    assert refused(scan("salaries.zip", archive)) == ("salaries.zip", "encrypted archive")
    assert scan("salaries.zip", archive, ban_encrypted_archives="no").status == "clean"
    # A banned name is seen even when the contents cannot be.
    _, rule = refused(
        scan("x.zip", encrypted_zip("payload.exe", b"x"), ban_encrypted_archives="no")
    )
    assert rule == "extension .exe"


def test_7z_archives_are_opened_and_their_encryption_seen():
    part, _ = refused(scan("tools.7z", seven_zip("tool.scr", b"x")))
    assert part == "tools.7z/tool.scr"
    part, _ = refused(scan("tools.7z", seven_zip("inner.zip", zipped("a.vbs", b"x"))))
    assert part == "tools.7z/inner.zip/a.vbs"
    assert refused(scan("secret.7z", seven_zip("a.txt", b"x", password="pw")))[1] == (
        "encrypted archive"
    )
    assert scan("notes.7z", seven_zip("notes.txt", b"plain notes")).status == "clean"


def test_rar_archives_are_judged_by_names_encryption_and_stored_contents():
    assert refused(scan("tools.rar", rar5("setup.exe", b"x"))) == (
        "tools.rar/setup.exe",
        "extension .exe",
    )
    assert refused(scan("secret.rar", rar5("notes.txt", b"x", encrypted=True))) == (
        "secret.rar",
        "encrypted archive",
    )
    part, rule = refused(scan("pics.rar", rar5("cat.jpg", windows_executable())))
    assert (part, rule.split()[0]) == ("pics.rar/cat.jpg", "content")
    assert scan("notes.rar", rar5("notes.txt", b"plain notes")).status == "clean"


def test_compressed_tars_are_opened():
    part, rule = refused(scan("logs.tar.gz", tar_gz("bin/cleanup.ps1", b"Remove-Item")))
    assert part == "logs.tar.gz/logs.tar/bin/cleanup.ps1"
    assert rule == "extension .ps1"
    part, rule = refused(scan("logs.tgz", tar_gz("image.png", windows_executable())))
    assert rule.startswith("content type")


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("report.pdf", PDF, "application/pdf"),
        ("pixel.png", PNG, "image/png"),
        ("documents.zip", zipped("report.pdf", PDF), "application/zip"),
    ],
)
def test_documents_and_images_pass(name, data, content_type):
    assert scan(name, data, content_type).status == "clean"


def test_the_extension_list_can_be_replaced():
    assert scan("invoice.pdf.exe", b"x", banned_extensions="").status == "clean"
    assert refused(scan("data.iso", b"x", banned_extensions="iso,img"))[1] == "extension .iso"


def test_an_encoded_file_name_is_decoded_before_the_rules():
    message = with_attachment("placeholder", b"x").as_bytes()
    encoded = b"=?utf-8?b?" + base64.b64encode(b"Rechnung.pdf.exe") + b"?="
    message = message.replace(b'filename="placeholder"', b'filename="' + encoded + b'"')
    verdict = BannedPlugin(settings=DEFAULTS).scan(message)
    assert refused(verdict) == ("Rechnung.pdf.exe", "double extension .pdf.exe")


def test_mail_without_attachments_is_never_parsed_and_text_never_typed(monkeypatch):
    parsed, looked_at = [], []

    def counted(message: bytes):
        parsed.append(message)
        return attachments(message)

    monkeypatch.setattr(inspection, "attachments", counted)
    inspector = Inspector(Rules.from_settings(DEFAULTS), lambda head: looked_at.append(head) or "")
    inspector.check(make_message(body="Plain text, nothing attached.").as_bytes())
    html = make_message()
    html.add_alternative("<p>Hello</p>", subtype="html")
    inspector.check(html.as_bytes())
    assert (parsed, looked_at) == ([], [])
    # A text attachment is parsed, but text is not shown to libmagic (it costs most there).
    inspector.check(with_attachment("notes.txt", b"Minutes of the meeting.\r\n").as_bytes())
    assert (len(parsed), len(looked_at)) == (1, 0)
    inspector.check(with_attachment("pixel.png", PNG, "image/png").as_bytes())
    assert (len(parsed), len(looked_at)) == (2, 1)


def _bounded(name: str, data: bytes, seconds: float = 10.0, **env: str):
    tracemalloc.start()
    started = time.monotonic()
    try:
        verdict = scan(name, data, **env)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < seconds
    return verdict, peak


def test_an_archive_bomb_is_refused_within_the_unpacked_bytes_bound():
    budget = 8 * 1024 * 1024
    bomb = tar_gz_bomb(256 * 1024 * 1024)
    verdict, peak = _bounded("backup.zip", bomb, banned_max_unpacked_bytes=str(budget))
    assert refused(verdict)[1] == f"archives unpack to more than {budget} bytes"
    assert peak < 4 * budget


def test_a_member_claiming_gigabytes_costs_only_its_head():
    bomb = zipped("zeros.bin", bytes(200 * 1024 * 1024))
    verdict, peak = _bounded("zeros.zip", bomb)
    assert verdict.status == "clean"  # not an archive, not a banned type: clamd's to judge
    assert peak < 16 * 1024 * 1024


def test_a_20_level_nested_archive_is_refused_at_the_depth_bound():
    verdict, _ = _bounded("nest.zip", nested_zips(20))
    part, rule = refused(verdict)
    assert rule == "archives nested deeper than 8"
    assert part.count("/") == 8
    assert scan("nest.zip", nested_zips(20), banned_max_archive_depth="25").status == "clean"


def test_too_many_files_are_refused_at_the_member_bound():
    verdict, _ = _bounded("many.zip", many_files_zip(300), banned_max_archive_members="200")
    assert refused(verdict)[1] == "archives hold more than 200 files"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("cut.zip", zipped("a.txt", b"text " * 500)[:60], "zip"),
        ("junk.zip", b"\x00\x01 not an archive at all", "zip"),
        ("cut.7z", seven_zip("a.txt", b"text " * 500)[:40], "7z"),
        ("cut.tar.gz", tar_gz("a.txt", b"text " * 5000)[:100], "gzip"),
    ],
)
def test_a_broken_archive_is_refused_not_a_crash(name, data, kind):
    verdict, _ = _bounded(name, data)
    assert refused(verdict) == (name, f"unreadable {kind} archive")


def test_bad_settings_fail_at_start_with_one_clear_line():
    with pytest.raises(
        ConfigError, match=r"MAILSCAN_BANNED_EXTENSIONS=.*not a file name extension"
    ):
        load_settings({"MAILSCAN_BANNED_EXTENSIONS": "exe,bad name"})
    with pytest.raises(ConfigError, match=r"MAILSCAN_BANNED_TYPES=.*not a content type"):
        load_settings({"MAILSCAN_BANNED_TYPES": "executable"})


def test_the_banned_engine_is_in_the_av_pool_by_default():
    assert DEFAULTS.pools["av"].plugins == ("clamav", "banned")


def _with_files(*files: tuple[str, bytes]) -> bytes:
    message = with_attachment(*files[0])
    for name, data in files[1:]:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message.as_bytes()


def test_every_verdict_lists_the_first_name_of_each_extension_seen():
    message = _with_files(
        ("disk.iso", b"x"),
        ("report.pdf", PDF),
        ("bundle.zip", zipped("other.iso", b"x")),
        ("notes", b"no extension"),
    )
    verdict = BannedPlugin(settings=DEFAULTS).scan(message)
    assert verdict.status == "clean"
    assert verdict.names == ("disk.iso", "report.pdf", "bundle.zip")
    assert not verdict.names_cut
    kept = EngineVerdict.from_record(verdict.to_record())
    assert (kept.names, kept.names_cut, kept.banned_by_name) == (verdict.names, False, False)


def test_a_ban_by_name_keeps_looking_so_the_names_are_complete():
    message = _with_files(
        ("invoice.pdf.exe", b"x"),
        ("tools.zip", zipped("run.js", b"x")),
        ("disk.iso", b"x"),
    )
    verdict = BannedPlugin(settings=DEFAULTS).scan(message)
    assert refused(verdict) == ("invoice.pdf.exe", "double extension .pdf.exe")
    assert verdict.banned_by_name
    assert verdict.names == ("invoice.pdf.exe", "tools.zip", "tools.zip/run.js", "disk.iso")
    assert EngineVerdict.from_record(verdict.to_record()).banned_by_name


def test_a_ban_by_type_or_structure_after_a_ban_by_name_ends_the_look_and_stands():
    message = _with_files(
        ("setup.exe", b"x"),
        ("salaries.zip", encrypted_zip("salaries.xlsx", b"figures")),
        ("disk.iso", b"x"),
    )
    verdict = BannedPlugin(settings=DEFAULTS).scan(message)
    assert refused(verdict) == ("salaries.zip", "encrypted archive")
    assert not verdict.banned_by_name
    clsid = "readme.txt.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}"
    verdict = BannedPlugin(settings=DEFAULTS).scan(_with_files(("a.exe", b"x"), (clsid, b"x")))
    assert refused(verdict) == (clsid, "Windows class id name")
    assert not verdict.banned_by_name


def test_the_names_are_bounded_and_say_when_they_were_cut():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(MAX_NAMES + 50):
            archive.writestr(f"file.x{index}", b"x")
            archive.writestr(f"copy{index}.txt", b"x")  # one extension: one name
    verdict = scan("many.zip", buffer.getvalue())
    assert verdict.status == "clean"
    assert len(verdict.names) == MAX_NAMES
    assert verdict.names_cut
    assert verdict.names[:3] == ("many.zip", "many.zip/file.x0", "many.zip/copy0.txt")
    long_name = "a" * 5000 + ".pdf.iso"
    verdict = scan("disk.zip", zipped(long_name, b"x"))
    assert verdict.names[1].endswith("aaa.pdf.iso")
    assert len(verdict.names[1]) < 300
