"""Single sign-on into the console in a real Chromium: "Sign in with local"
through a real OpenID Connect provider (oidc-provider on Node, from
tests/oidc), and "Sign in with GitHub" through a local server speaking
GitHub's OAuth and user-API shapes (GitHub issues no ID token: the account
is read from /user and /user/emails and linked by GitHub's numeric id). Both
land back in the console signed in; a second sign-in reaches the same
account; a forged or replayed callback is refused."""

import base64
import hashlib
import http.server
import json
import pathlib
import shutil
import subprocess
import threading
import urllib.parse

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Server
from doppel_server import free_port
from test_console import audit

OIDC_DIR = pathlib.Path(__file__).resolve().parents[1] / "oidc"



class FakeGitHub(http.server.BaseHTTPRequestHandler):
    """GitHub's authorize page (which signs "octo" in at once), its token
    exchange with PKCE, and the REST API's /user and /user/emails."""

    codes: dict = {}
    client_secret = "gh-test-secret"
    seen: list = []

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/login/oauth/authorize":
            type(self).seen.append(q)
            code = base64.urlsafe_b64encode(hashlib.sha256(q["state"].encode()).digest()[:12]).decode()
            type(self).codes[code] = (q["redirect_uri"], q.get("code_challenge"))
            target = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
            self.send_response(302)
            self.send_header("location", target)
            self.end_headers()
            return
        if self.headers.get("authorization") != "Bearer gho_test_token":
            return self.answer(401, {"message": "Requires authentication"})
        if url.path == "/api/v3/user":
            return self.answer(200, {"id": 4242, "login": "octo", "email": None})
        if url.path == "/api/v3/user/emails":
            return self.answer(200, [
                {"email": "octo-old@users.example.com", "primary": False, "verified": True},
                {"email": "octo@users.example.com", "primary": True, "verified": True},
            ])
        self.answer(404, {"message": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        if self.path != "/login/oauth/access_token":
            return self.answer(404, {"message": "Not Found"})
        known = type(self).codes.pop(form.get("code", ""), None)
        verifier_ok = known is not None and known[1] == base64.urlsafe_b64encode(
            hashlib.sha256(form.get("code_verifier", "").encode()).digest()).decode().rstrip("=")
        # GitHub answers a refused exchange with 200 and an error.
        if (form.get("client_secret") != self.client_secret or known is None
                or known[0] != form.get("redirect_uri") or not verifier_ok):
            return self.answer(200, {"error": "bad_verification_code"})
        self.answer(200, {"access_token": "gho_test_token", "token_type": "bearer", "scope": "read:user,user:email"})


@pytest.fixture(scope="module")
def github():
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), FakeGitHub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def oidc_and_server(github):
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir() or not shutil.which("node"):
        pytest.skip("run `npm ci` in tests/oidc for the OpenID provider")
    idp_port, port = free_port(), free_port()
    console_cb = f"http://127.0.0.1:{port}/login/sso/local/callback"
    node = subprocess.Popen(["node", "provider.mjs", str(idp_port), console_cb], cwd=OIDC_DIR,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert node.stdout.readline().strip() == "ready"
    threading.Thread(target=lambda: [None for _ in node.stdout], daemon=True).start()
    issuer = f"http://127.0.0.1:{idp_port}"
    server = Server(
        env={
            "DOPPEL__AUTH__OIDC": f'[{{name = "local", issuer = "{issuer}", client_id = "doppel", '
                                  f'client_secret = "doppel-test-secret"}}]',
            "DOPPEL__AUTH__GITHUB": f'{{client_id = "gh-client", client_secret = "gh-test-secret", '
                                    f'web_url = "{github}", api_url = "{github}/api/v3"}}',
        },
        port=port,
    )
    yield server
    server.stop()
    node.kill()
    node.wait()


def test_sign_in_with_an_openid_provider_lands_in_the_console(oidc_and_server, browser):
    server = oidc_and_server
    browser.delete_all_cookies()
    browser.set_window_size(1280, 900)
    browser.get(server.http + "/login?next=/account")
    audit(browser, "login-sso")
    browser.find_element(By.LINK_TEXT, "Sign in with local").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/account"))
    assert "alice@idp.example.com" in browser.find_element(By.TAG_NAME, "main").text
    first = browser.find_element(By.CSS_SELECTOR, "header .email").text
    browser.find_element(By.CSS_SELECTOR, "header form[action='/logout'] button").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/login"))
    browser.find_element(By.LINK_TEXT, "Sign in with local").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header .email")))
    assert browser.find_element(By.CSS_SELECTOR, "header .email").text == first, "the same linked account"
    browser.find_element(By.CSS_SELECTOR, "header form[action='/logout'] button").click()


def test_sign_in_with_github_reads_the_user_api_and_links_by_id(oidc_and_server, github, browser):
    server = oidc_and_server
    browser.delete_all_cookies()
    browser.set_window_size(1280, 900)
    browser.get(server.http + "/login")
    browser.find_element(By.LINK_TEXT, "Sign in with GitHub").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header .email")))
    assert browser.find_element(By.CSS_SELECTOR, "header .email").text == "octo@users.example.com", "the verified primary"
    asked = FakeGitHub.seen[-1]
    assert asked["code_challenge_method"] == "S256" and asked["client_id"] == "gh-client"
    assert asked["redirect_uri"] == server.http + "/login/sso/github/callback"
    assert "user:email" in asked["scope"]
    # A callback whose state was never issued (or was used) signs nobody in.
    browser.find_element(By.CSS_SELECTOR, "header form[action='/logout'] button").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/login"))
    browser.get(server.http + "/login/sso/github/callback?code=x&state=" + asked["state"])
    alert = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "main .alert")))
    assert "single sign-on failed" in alert.text.lower(), alert.text
    assert not browser.find_elements(By.CSS_SELECTOR, "header .email")
    # REST's door signs the same GitHub user into the same account (urllib
    # follows the redirects to GitHub and back to REST's callback).
    code, session = server.rest("GET", "/v1/auth/oidc/github/start")
    assert code == 200, session
    assert session["account"]["email"] == "octo@users.example.com"
