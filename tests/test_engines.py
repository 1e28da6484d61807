"""Each engine on its own, against the real daemon or program behind it."""

import io
import zipfile
from dataclasses import replace

import pytest

from tasks.errors import BackendUnavailable
from tasks.plugins import load_plugin
from tests.conftest import CORPUS, EICAR, GTUBE, make_message

pytestmark = pytest.mark.integration

MARKER = b"MAILSCAN-TEST-SIGNATURE-7f3a9c"


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("engine", ["clamav", "builtin", "command"])
def test_each_engine_finds_eicar_in_an_attachment(stack, settings, engine):
    plugin = load_plugin(engine, "av", settings)
    infected = plugin.scan(make_message(attachment=EICAR).as_bytes())
    clean = plugin.scan(make_message().as_bytes())
    assert infected.status == "infected"
    assert "EICAR" in (infected.virus or "")
    assert clean.status == "clean"


@pytest.mark.parametrize("engine", ["clamav", "builtin"])
def test_engines_look_inside_zip_attachments(stack, settings, engine):
    message = make_message(attachment=zipped("readme.com", EICAR)).as_bytes()
    assert load_plugin(engine, "av", settings).scan(message).status == "infected"


def test_shipped_test_signature_is_found_by_clamd_and_the_builtin_engine(stack, settings):
    message = make_message(body=f"text {MARKER.decode()} text").as_bytes()
    for engine in ("clamav", "builtin"):
        verdict = load_plugin(engine, "av", settings).scan(message)
        assert verdict.virus
        assert "Marker" in verdict.virus


def test_clamd_sees_a_signature_across_the_chunks_of_a_large_message(stack, settings):
    from tasks.plugins.clamav import STREAM_CHUNK_BYTES

    plugin = load_plugin("clamav", "av", settings)
    head = b"Subject: chunks\r\nContent-Type: text/plain\r\n\r\n"
    # The signature starts 10 bytes before the end of the first chunk, in a message of three.
    padding = b"a" * (STREAM_CHUNK_BYTES - len(head) - 10)
    message = head + padding + MARKER + b"\r\n" + b"b" * 2 * STREAM_CHUNK_BYTES
    assert plugin.scan(message).status == "infected"
    assert plugin.scan(head + padding + b"\r\n" + b"b" * 2 * STREAM_CHUNK_BYTES).status == "clean"
    assert plugin.scan(b"").status == "clean"


def test_spamassassin_scores_gtube_and_names_the_rule(stack, settings):
    plugin = load_plugin("spamassassin", "spam", settings)
    verdict = plugin.scan(make_message(body=GTUBE).as_bytes())
    assert verdict.status == "spam"
    assert verdict.score
    assert verdict.score >= 1000
    assert verdict.threshold == 5.0
    assert "GTUBE" in verdict.rules


def test_spamassassin_on_real_ham_from_the_corpus(stack, settings):
    verdict = load_plugin("spamassassin", "spam", settings).scan(
        (CORPUS / "nice" / "001.eml").read_bytes()
    )
    assert verdict.status == "ham"
    assert verdict.score is not None
    assert verdict.score < 5.0


def test_unreachable_clamd_is_a_backend_failure_not_a_verdict(settings):
    plugin = load_plugin("clamav", "av", replace(settings, clamd=replace(settings.clamd, port=1)))
    with pytest.raises(BackendUnavailable, match="clamd"):
        plugin.scan(b"Subject: x\r\n\r\nx\r\n")


def test_missing_scanner_command_is_a_backend_failure(settings):
    broken = replace(settings, command_scanner=("/nonexistent/scanner", "-"))
    with pytest.raises(BackendUnavailable, match="not found"):
        load_plugin("command", "av", broken).scan(b"x")


def test_a_message_over_clamds_stream_limit_is_refused_as_too_large_not_retried(settings):
    import socket
    import threading

    from tasks.errors import ScanError
    from tasks.setting_parsers import Endpoint

    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def clamd_with_a_small_limit() -> None:  # reads 1 MB, then answers as clamd does
        listener.settimeout(10)
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            connections.append(peer)
            received = 0
            while received < 1024 * 1024:
                received += len(peer.recv(65536))
            peer.sendall(b"INSTREAM size limit exceeded. ERROR\n")
            peer.close()

    threading.Thread(target=clamd_with_a_small_limit, daemon=True).start()
    small_limit = replace(settings, clamd=Endpoint("127.0.0.1", listener.getsockname()[1]))
    plugin = load_plugin("clamav", "av", small_limit)
    try:
        with pytest.raises(ScanError, match="too large"):
            plugin.scan(b"Subject: big\r\n\r\n" + b"x" * 20 * 1024 * 1024)
    finally:
        listener.close()
    assert len(connections) == 1  # not taken for a dropped connection and tried again


def test_the_settings_know_every_plugin_and_its_pools():
    from tasks.plugins import REGISTRY, plugin_class
    from tasks.setting_parsers import PLUGIN_POOLS

    assert set(REGISTRY) == set(PLUGIN_POOLS)
    assert {name: plugin_class(name).pools for name in REGISTRY} == PLUGIN_POOLS
