"""The console's sessions and login limits over real HTTP, against consoles started as
``mailscan up`` starts them, each with folders and administrators of its own, on the session's
Redis. Clients come from addresses of their own on loopback (127.0.0.x), as different
machines would, so the limits of one test are not another's."""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from importlib.metadata import version

import httpx
import pytest

from mailserver.console.throttle import FIRST_WAIT_S, LoginThrottle
from tasks import redisauth
from tasks.settings import Settings, load_settings
from tests.conftest import TEST_ROOT, mailscan, port, wait_for
from tests.console_session import ADMIN, PASSWORD, add_admin, console_only, csrf_token

pytestmark = pytest.mark.integration
COOKIE = "mailscan_console"
TOO_MANY = re.compile(r"Too many failed logins\. Try again in (\d+) seconds\.")


@contextmanager
def running_console(name: str, console_port: int, **overrides: str) -> Iterator[dict[str, str]]:
    """A console of its own (folders, administrators, port); its environment."""
    env = {**os.environ, "MAILSCAN_VAR_DIR": str(TEST_ROOT / name),
           "MAILSCAN_CONSOLE_PORT": str(console_port),
           **{f"MAILSCAN_{key.upper()}": value for key, value in overrides.items()}}  # fmt: skip
    with console_only(env):
        yield env


@pytest.fixture(scope="module")
def console_env(stack) -> Iterator[dict[str, str]]:
    # A host name no page could hold by chance, whatever the machine is called.
    with running_console("console-sessions", port(18027), hostname="mx7.example.test") as env:
        yield env


@pytest.fixture(scope="module")
def cs(console_env) -> Settings:
    return load_settings(console_env)


@pytest.fixture
def base(console_env, cs) -> Iterator[str]:
    """The console's address, with its administrator and no failed logins counted."""
    if not cs.console_users_file.exists():
        add_admin(console_env)
    forget_failed_logins(cs)
    yield f"http://127.0.0.1:{cs.console_port}"
    forget_failed_logins(cs)


def forget_failed_logins(settings: Settings) -> None:
    client = redisauth.connect(settings)
    for key in client.scan_iter("mailscan:console:login-failures:*"):
        client.delete(key)


def from_address(base: str, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, transport=transport, timeout=30)


def try_login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


def logged_in(base: str, name: str = ADMIN, password: str = PASSWORD) -> httpx.Client:
    client = from_address(base)
    assert try_login(client, name, password).status_code == 303
    assert client.get("/").status_code == 200
    return client


def fail_at_once(base: str, address: str, names: list[str]) -> None:
    """Wrong passwords for ``names``, all at once from ``address``."""

    def fail(name: str) -> int:
        with from_address(base, address) as client:
            return try_login(client, name, "not the password").status_code

    with ThreadPoolExecutor(len(names)) as pool:
        assert list(pool.map(fail, names)) == [401] * len(names)


def held_as_counted(
    settings: Settings, address: str, name: str, attempt: Callable[[], httpx.Response]
) -> int:
    """The wait a refused ``attempt`` announces: what the failures counted in Redis leave of
    the first wait, rounded up, as read just before and just after it (the wait counts down
    meanwhile)."""
    throttle = LoginThrottle(redisauth.connect(settings))
    before = throttle.wait_s(address, name)
    announced = held(attempt())
    after = throttle.wait_s(address, name)
    assert 0 < after <= before <= FIRST_WAIT_S
    assert math.ceil(after) <= announced <= math.ceil(before)
    return announced


def held(answer: httpx.Response) -> int:
    """The seconds a refused try is told to wait; asserts the refusal says so both ways."""
    assert answer.status_code == 429
    said = TOO_MANY.search(answer.text)
    assert said, answer.text
    assert answer.headers["retry-after"] == said[1]
    return int(said[1])


def test_the_login_page_tells_a_visitor_nothing_about_the_server(console_env, cs, base):
    def anonymous_page() -> httpx.Response:
        with from_address(base) as client:
            return client.get("/login")

    kept = cs.console_users_file.read_bytes()
    cs.console_users_file.unlink()
    try:
        without_users = anonymous_page()
    finally:
        cs.console_users_file.write_bytes(kept)
    with_users = anonymous_page()
    token = re.compile(r'value="[^"]+"')  # the form's CSRF token differs per visitor
    assert token.sub("", without_users.text) == token.sub("", with_users.text)
    assert cs.hostname == "mx7.example.test"
    for secret in (cs.hostname, version("mailscan"), str(cs.var_dir), "users.json", "adduser",
                   "administrator", platform.python_version(), "uvicorn", "starlette"):  # fmt: skip
        assert secret not in with_users.text, secret
    assert "server" not in with_users.headers
    # The hint an empty console needs is for whoever runs it: in its log.
    log = (cs.var_dir / "log" / "console.log").read_text()
    assert "no console administrator yet: add one with 'mailscan console adduser NAME'" in log


def test_failed_logins_make_a_name_wait_whether_it_exists_or_not(base, cs):
    fail_at_once(base, "127.0.0.2", [ADMIN] * 5)
    fail_at_once(base, "127.0.0.3", ["nobody-here"] * 5)
    with from_address(base, "127.0.0.4") as elsewhere:
        waits = [  # the right password as well
            held_as_counted(cs, "127.0.0.4", ADMIN,
                            lambda: try_login(elsewhere, ADMIN, PASSWORD)),
            held_as_counted(cs, "127.0.0.4", "nobody-here",
                            lambda: try_login(elsewhere, "nobody-here", "whatever")),
        ]  # fmt: skip
        assert elsewhere.get("/").status_code == 303  # not logged in
        time.sleep(max(waits))  # as long as the answer said, and no longer
        assert try_login(elsewhere, ADMIN, PASSWORD).status_code == 303
        assert elsewhere.get("/").status_code == 200
    # The success forgot the name's failures: four more are heard (each one a fresh 401).
    with from_address(base, "127.0.0.5") as again:
        assert [try_login(again, ADMIN, "wrong").status_code for _ in range(4)] == [401] * 4


def test_failed_logins_make_an_address_wait_for_every_name(base, cs):
    fail_at_once(base, "127.0.0.6", [f"guess-{n}" for n in range(10)])
    with from_address(base, "127.0.0.6") as guesser:
        # The right password, the wrong address.
        held_as_counted(cs, "127.0.0.6", ADMIN, lambda: try_login(guesser, ADMIN, PASSWORD))
    with from_address(base, "127.0.0.7") as administrator:
        assert try_login(administrator, ADMIN, PASSWORD).status_code == 303


def test_logout_ends_the_session_for_every_copy_of_its_cookie(base):
    client = logged_in(base)
    with from_address(base) as copy:
        copy.cookies.set(COOKIE, client.cookies[COOKIE])
        assert copy.get("/").status_code == 200
        home = client.get("/").text
        assert client.post("/logout", data={"csrf_token": csrf_token(home)}).status_code == 303
        answer = copy.get("/")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/login")
    client.close()


def test_a_new_password_ends_the_sessions_of_the_old_one(console_env, base):
    client = logged_in(base)
    try:
        said = add_admin(console_env, ADMIN, "a brand new password")
        assert "their console sessions have ended" in said
        assert client.get("/").status_code == 303
        with from_address(base) as fresh:
            assert try_login(fresh, ADMIN, PASSWORD).status_code == 401
            assert try_login(fresh, ADMIN, "a brand new password").status_code == 303
    finally:
        add_admin(console_env)
        client.close()


def test_deluser_removes_an_administrator_and_ends_their_sessions(console_env, base):
    add_admin(console_env, "bob", "bobs own password")
    bob, admin = logged_in(base, "bob", "bobs own password"), logged_in(base)
    removed = mailscan("console", "deluser", "bob", env=console_env)
    assert removed.returncode == 0, removed.stderr
    assert "administrator 'bob' removed" in removed.stdout
    assert bob.get("/").status_code == 303
    assert admin.get("/").status_code == 200  # the others stay logged in
    with from_address(base) as fresh:
        assert try_login(fresh, "bob", "bobs own password").status_code == 401
    again = mailscan("console", "deluser", "bob", env=console_env)
    assert again.returncode == 2
    assert "mailscan: no administrator named 'bob'" in again.stderr
    assert "administrators: admin" in again.stderr
    bob.close()
    admin.close()


def test_a_session_ends_at_its_lifetime_however_busy(stack):
    with running_console("console-short", port(18028), console_session_max_s="4") as env:
        add_admin(env)
        base = f"http://127.0.0.1:{port(18028)}"
        # The wall clock, as the sessions keep it: they outlive any one console process.
        began = time.time()
        client = logged_in(base)
        while time.time() - began < 3:  # in use all the while
            assert client.get("/").status_code == 200
            time.sleep(0.3)
        wait_for(lambda: client.get("/").status_code == 303, 5, "the session's end")
        # The cookie's Expires is in whole seconds: the browser may drop it up to one early.
        assert time.time() - began >= 3
        client.close()


def test_the_cookie_is_marked_secure_when_a_tls_proxy_is_in_front(stack, base):
    with from_address(base) as plain:
        assert "secure" not in plain.get("/login").headers["set-cookie"].lower()
    with running_console("console-tls", port(18029), console_secure_cookies="yes") as env:
        add_admin(env)
        secure = f"http://127.0.0.1:{port(18029)}"
        with from_address(secure) as client:
            form = client.get("/login")
            assert "; secure" in form.headers["set-cookie"].lower()
            # A browser would send it back over HTTPS only; the proxy speaks HTTP to us.
            cookie = form.headers["set-cookie"].split(";")[0]
            answer = client.post("/login", headers={"Cookie": cookie},
                                 data={"name": ADMIN, "password": PASSWORD,
                                       "csrf_token": csrf_token(form.text)})  # fmt: skip
            assert answer.status_code == 303
            flags = answer.headers["set-cookie"].lower()
            assert all(flag in flags for flag in ("; secure", "httponly", "samesite=strict"))
