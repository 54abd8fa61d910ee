"""The web console in a real headless Chromium against the real binary: the
whole journey a data team takes (sign up, upload Adult by the file picker
the drop zone wraps, read its schema, synthesize, watch the stages finish,
read the report with its charts, download, list the twin) and a second
account buying it on the provider's hosted page and downloading it; two-
factor sign-in; API keys; an operator disabling an account; forged and
cross-account requests refused. axe-core (npm) audits every page for
serious or critical accessibility violations, and a screenshot of every
page at 1280 px (a few at phone width too) is written to screenshots/."""

import base64
import hashlib
import hmac
import json
import pathlib
import struct
import time
import urllib.error
import urllib.request

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ADULT

HERE = pathlib.Path(__file__).resolve().parent
SHOTS = HERE / "screenshots"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery staple"
# Pages whose axe results were checked, by name (the note lists them).
AUDITED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def shots():
    SHOTS.mkdir(exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    yield


@pytest.fixture(autouse=True)
def fresh_browser(browser):
    """Each test starts signed out, whatever the one before left behind."""
    browser.delete_all_cookies()
    yield


def wait(browser, timeout=30):
    return WebDriverWait(browser, timeout)


def audit(browser, name: str, phone: bool = False):
    """axe-core on the current page (no serious or critical violation), and
    a screenshot at 1280 px (and at 390 px when `phone`)."""
    assert AXE.exists(), "run `npm ci` in tests/browser to install axe-core"
    browser.execute_script(AXE.read_text())
    violations = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => "
        "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))));"
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, indent=1)}"
    AUDITED.append(name)
    height = browser.execute_script("return Math.min(document.body.scrollHeight + 40, 6000)")
    browser.set_window_size(1280, max(800, height))
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    if phone:
        browser.set_window_size(390, 844)
        browser.save_screenshot(str(SHOTS / f"{name}-phone.png"))
    browser.set_window_size(1280, 900)


def csrf(browser) -> str:
    return browser.find_element(By.CSS_SELECTOR, 'meta[name="csrf-token"]').get_attribute("content")


def fetch(browser, url: str, method: str = "GET", headers: dict | None = None, body: str | None = None):
    """A request from the page itself (its cookies, its origin): (status, text)."""
    return browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: arguments[1], headers: arguments[2] || {}, body: arguments[3], redirect: 'manual'})"
        ".then(r => r.text().then(t => done([r.status, t.slice(0, 4000)]))).catch(e => done([0, String(e)]));",
        url,
        method,
        headers or {},
        body,
    )


def sign_up(browser, server, email: str):
    browser.get(server.http + "/signup")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "password_again").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".flash")))


def sign_out(browser):
    browser.find_element(By.CSS_SELECTOR, "header form[action='/logout'] button").click()
    wait(browser).until(ec.url_contains("/login"))


def sign_in(browser, server, email: str, code: str | None = None):
    browser.get(server.http + "/login")
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form[data-login] button[type=submit]").click()
    if code is not None:
        field = wait(browser).until(ec.visibility_of_element_located((By.ID, "code")))
        field.send_keys(code)
        browser.find_element(By.CSS_SELECTOR, "form[data-login] button[type=submit]").click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header form[action='/logout']")))


def totp(secret_b32: str, step_offset: int = 0) -> str:
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int(time.time()) // 30 + step_offset
    digest = hmac.new(key, struct.pack(">q", step), hashlib.sha1).digest()
    o = digest[19] & 0x0F
    return f"{(struct.unpack('>I', digest[o:o + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def wait_job(browser, timeout=900) -> str:
    """On a job page: wait until it ends (the page reloads itself)."""
    def ended(b):
        try:
            s = b.find_element(By.CSS_SELECTOR, "[data-job-state] .badge").text
        except Exception:  # noqa: BLE001 (reloading)
            return False
        return s if s in ("succeeded", "failed", "cancelled") else False

    return wait(browser, timeout).until(ended)


def upload_adult(browser, server) -> str:
    browser.get(server.http + "/datasets")
    audit(browser, "datasets-empty", phone=True)
    browser.find_element(By.ID, "file").send_keys(str(ADULT))
    status = browser.find_element(By.CSS_SELECTOR, "[data-upload-status]")
    wait(browser).until(lambda b: "Ready: adult.csv" in status.text)
    assert browser.find_element(By.ID, "name").get_attribute("value") == "adult.csv"
    browser.find_element(By.CSS_SELECTOR, "[data-upload] button[type=submit]").click()
    wait(browser, 180).until(ec.url_matches(r"/datasets/ds_"))
    return browser.current_url.rsplit("/", 1)[1]


def test_the_whole_journey_from_upload_to_a_bought_twin(server, browser):
    browser.set_window_size(1280, 900)
    browser.get(server.http + "/")
    audit(browser, "welcome", phone=True)
    browser.get(server.http + "/signup")
    audit(browser, "signup")
    sign_up(browser, server, "seller@example.com")
    audit(browser, "home-new", phone=True)

    # Upload, then the schema: every column with its type and a histogram.
    dataset = upload_adult(browser, server)
    rows = browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")
    assert len(rows) >= 15
    schema = browser.find_element(By.XPATH, "//h2[text()='Schema']/following::table[1]")
    assert "age" in schema.text and "Int64" in schema.text and "numerical" in schema.text
    assert len(schema.find_elements(By.CSS_SELECTOR, "svg.spark")) >= 10
    assert "Not scanned yet" in browser.page_source
    audit(browser, "dataset", phone=True)

    # Synthesize: the method picker names every method and says plainly
    # which this build lacks.
    browser.find_element(By.LINK_TEXT, "Synthesize").click()
    picker = browser.find_element(By.CSS_SELECTOR, "form[data-method-picker]")
    assert browser.find_element(By.ID, "method-cart").is_selected()
    assert "Not available" in picker.text and "--features torch" in picker.text
    assert not browser.find_element(By.ID, "method-privsyn").is_selected()
    browser.find_element(By.ID, "method-privsyn").click()
    assert browser.find_element(By.ID, "epsilon").is_displayed(), "ε shows for the DP method"
    assert "privacy budget left" in picker.text
    browser.find_element(By.ID, "method-cart").click()
    assert not browser.find_element(By.ID, "epsilon").is_displayed()
    audit(browser, "synthesize", phone=True)
    browser.find_element(By.ID, "seed").clear()
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.CSS_SELECTOR, "form[data-method-picker] button[type=submit]").click()
    wait(browser).until(ec.url_matches(r"/jobs/job_"))
    job = browser.current_url.rsplit("/", 1)[1]
    # Live progress: the stages are listed while it runs, updated over SSE.
    wait(browser, 120).until(lambda b: b.find_elements(By.CSS_SELECTOR, "[data-step]")
                             or b.find_element(By.CSS_SELECTOR, "[data-job-state] .badge").text == "succeeded")
    if browser.find_elements(By.CSS_SELECTOR, "[data-job-events]"):
        audit(browser, "job-running")
    assert wait_job(browser) == "succeeded"
    steps = {s.get_attribute("data-step"): s.text for s in browser.find_elements(By.CSS_SELECTOR, "[data-step]")}
    assert {"source", "pii", "synth", "quality", "privacy", "report"} <= set(steps), steps
    assert all("done" in t for t in steps.values()), steps
    audit(browser, "job-done", phone=True)

    # The report: scores, charts per column, heatmaps, privacy, checklist.
    browser.find_element(By.LINK_TEXT, "Open the report").click()
    page = browser.find_element(By.TAG_NAME, "main").text
    for heading in ("Personal data", "Columns: real and synthetic", "How columns relate", "Privacy",
                    "Compliance checklist", "How the twin was made"):
        assert heading in page, heading
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure svg.chart")) >= 12
    assert browser.find_element(By.XPATH, "//figcaption[text()='Difference']")
    assert "DCROverfittingProtection" in page and "HIPAA" in page and "GDPR" in page
    audit(browser, "report", phone=True)
    # Downloads: the PDF, report.json, the twin as Parquet and as CSV.
    status, text = fetch(browser, f"/jobs/{job}/files/report.json")
    assert status == 200 and '"report_version"' in text, text[:200]
    status, text = fetch(browser, f"/jobs/{job}/files/synthetic.csv")
    assert status == 200 and text.startswith("age,workclass,fnlwgt"), text[:200]
    status, text = fetch(browser, f"/jobs/{job}/files/report.pdf")
    assert status == 200 and text.startswith("%PDF-"), text[:20]

    # The dataset page now shows what the scan found.
    browser.get(f"{server.http}/datasets/{dataset}")
    assert "The latest scan" in browser.page_source

    # List the twin; then buy it as somebody else.
    browser.get(f"{server.http}/jobs/{job}")
    browser.find_element(By.LINK_TEXT, "List this twin on the marketplace").click()
    assert browser.find_element(By.CSS_SELECTOR, f"#job_id option[value='{job}']").is_selected()
    browser.find_element(By.ID, "title").send_keys("Adult census twin <b>&</b>")
    browser.find_element(By.ID, "description").send_keys("A synthetic twin of UCI Adult: income by age, education and work.")
    browser.find_element(By.ID, "tags").send_keys("census, income")
    browser.find_element(By.ID, "category").send_keys("demographics")
    browser.find_element(By.ID, "price").send_keys("15.00")
    currency = browser.find_element(By.ID, "currency")
    currency.clear()
    currency.send_keys("EUR")
    audit(browser, "sell-new")
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser).until(ec.url_matches(r"/market/lst_"))
    listing = browser.current_url.rsplit("/", 1)[1]
    assert browser.find_element(By.TAG_NAME, "h1").text == "Adult census twin <b>&</b>", "shown as text"
    audit(browser, "listing-seller")
    browser.get(server.http + "/selling")
    assert "Adult census twin" in browser.page_source
    audit(browser, "selling", phone=True)
    sign_out(browser)
    audit(browser, "signed-out")

    sign_up(browser, server, "buyer@example.com")
    browser.get(server.http + "/market?q=census&min_privacy=40&sort=price_asc")
    audit(browser, "market", phone=True)
    browser.find_element(By.PARTIAL_LINK_TEXT, "Adult census twin").click()
    assert "EUR" in browser.find_element(By.CSS_SELECTOR, ".scores").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "main table tbody tr")) == 20, "20 preview rows"
    audit(browser, "listing-buyer")
    browser.find_element(By.XPATH, "//button[starts-with(text(), 'Buy for')]").click()
    # The built-in provider's hosted page, then back to the purchase.
    wait(browser).until(ec.url_contains("/v1/fake-pay/"))
    browser.find_element(By.ID, "pay").click()
    wait(browser, 60).until(ec.url_matches(r"/purchases/pur_"))
    state = browser.find_element(By.ID, "purchase-state")
    assert state.get_attribute("data-status") == "completed", state.text
    audit(browser, "purchase", phone=True)
    purchase = browser.current_url.rsplit("/", 1)[1]
    status, text = fetch(browser, f"/purchases/{purchase}/download?format=csv")
    assert status == 200 and text.startswith("age,"), text[:100]
    browser.get(server.http + "/purchases")
    assert "Adult census twin" in browser.page_source
    audit(browser, "purchases")

    # The seller's job, dataset and report stay invisible to the buyer: 404.
    for path in (f"/jobs/{job}", f"/jobs/{job}/report", f"/datasets/{dataset}", f"/jobs/{job}/files/synthetic.csv",
                 f"/selling/{listing}"):
        browser.get(server.http + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Not found", path
    audit(browser, "not-found")
    # And the buyer's purchase is invisible to the seller.
    sign_out(browser)
    sign_in(browser, server, "seller@example.com")
    browser.get(f"{server.http}/purchases/{purchase}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    browser.get(server.http + "/notifications")
    assert "sale" in browser.page_source.lower()
    audit(browser, "notifications")
    sign_out(browser)


def test_a_twin_below_the_privacy_bar_is_refused_with_the_reason(browser, tmp_path):
    # An operator's stricter bar (75) and a table whose every synthetic row
    # copies a real one (two columns, four possible rows).
    from conftest import Server

    strict = Server(env={"DOPPEL__PAYMENTS__MIN_PRIVACY_SCORE": "75"})
    try:
        browser.set_window_size(1280, 900)
        sign_up(browser, strict, "gate@example.com")
        tiny = tmp_path / "plans.csv"
        tiny.write_text("plan,active\n" + "".join(f"{['free', 'pro'][i % 2]},{['yes', 'no'][i % 7 % 2]}\n"
                                                   for i in range(400)))
        browser.get(strict.http + "/datasets")
        browser.find_element(By.ID, "file").send_keys(str(tiny))
        browser.find_element(By.CSS_SELECTOR, "[data-upload] button[type=submit]").click()
        wait(browser, 120).until(ec.url_matches(r"/datasets/ds_"))
        browser.find_element(By.LINK_TEXT, "Synthesize").click()
        browser.find_element(By.CSS_SELECTOR, "form[data-method-picker] button[type=submit]").click()
        wait(browser).until(ec.url_matches(r"/jobs/job_"))
        assert wait_job(browser) == "succeeded"
        job = browser.current_url.rsplit("/", 1)[1]
        browser.get(f"{strict.http}/selling/new?job={job}")
        for field, value in (("title", "Plans"), ("description", "Which plan is active."),
                             ("category", "saas"), ("price", "1")):
            browser.find_element(By.ID, field).send_keys(value)
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        alert = wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".alert")))
        assert "cannot be listed" in alert.text and "below the marketplace minimum of 75" in alert.text, alert.text
        assert browser.find_element(By.ID, "title").get_attribute("value") == "Plans", "the form keeps what was typed"
        audit(browser, "sell-refused")
        sign_out(browser)
    finally:
        strict.stop()


def test_excel_and_json_arrays_upload_like_csv(server, browser, tmp_path):
    browser.set_window_size(1280, 900)
    sign_up(browser, server, "formats@example.com")
    browser.get(server.http + "/datasets")
    browser.find_element(By.ID, "file").send_keys(str(ADULT.parent / "adult-sample.xlsx"))
    browser.find_element(By.CSS_SELECTOR, "[data-upload] button[type=submit]").click()
    wait(browser, 120).until(ec.url_matches(r"/datasets/ds_"))
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "200" in facts and "(xlsx)" in facts, facts
    schema = browser.find_element(By.XPATH, "//h2[text()='Schema']/following::table[1]").text
    assert "interviewed Date32" in schema and "column_17" in schema, schema
    audit(browser, "dataset-xlsx")
    records = tmp_path / "plans.json"
    records.write_text(json.dumps([{"plan": ["free", "pro"][i % 2], "seats": i % 9 + 1} for i in range(50)], indent=2))
    browser.get(server.http + "/datasets")
    browser.find_element(By.ID, "file").send_keys(str(records))
    browser.find_element(By.CSS_SELECTOR, "[data-upload] button[type=submit]").click()
    wait(browser, 120).until(ec.url_matches(r"/datasets/ds_"))
    assert "(json)" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    # A broken file is refused with the place, and nothing is stored.
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"plan": "free"},\n {"plan": }\n]')
    browser.get(server.http + "/datasets")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.CSS_SELECTOR, "[data-upload] button[type=submit]").click()
    status = browser.find_element(By.CSS_SELECTOR, "[data-upload-status]")
    wait(browser, 60).until(lambda b: "bad.json:3" in status.text)
    assert "/tmp" not in status.text, status.text
    audit(browser, "upload-refused")
    sign_out(browser)


def test_two_factor_sign_in_with_a_code_and_with_a_recovery_code(server, browser):
    browser.set_window_size(1280, 900)
    sign_up(browser, server, "totp@example.com")
    browser.get(server.http + "/account/totp")
    audit(browser, "totp-start")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    secret = wait(browser).until(ec.presence_of_element_located((By.ID, "totp-secret"))).text
    assert browser.find_elements(By.CSS_SELECTOR, "figure svg"), "a QR code"
    audit(browser, "totp-scan")
    browser.find_element(By.ID, "code").send_keys(totp(secret))
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    codes = [c.text for c in wait(browser).until(
        ec.presence_of_all_elements_located((By.CSS_SELECTOR, "#recovery-codes code")))]
    assert len(codes) >= 8
    audit(browser, "totp-recovery-codes")
    sign_out(browser)

    # Email and password first; the code field appears (password kept).
    browser.get(server.http + "/login")
    browser.find_element(By.ID, "email").send_keys("totp@example.com")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    assert not browser.find_element(By.ID, "code").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "form[data-login] button[type=submit]").click()
    code = wait(browser).until(ec.visibility_of_element_located((By.ID, "code")))
    audit(browser, "login-code")
    assert browser.find_element(By.ID, "password").get_attribute("value") == PASSWORD
    # A wrong code is refused without saying which factor was wrong.
    code.send_keys("000000" if totp(secret, 1) != "000000" else "111111")
    browser.find_element(By.CSS_SELECTOR, "form[data-login] button[type=submit]").click()
    alert = wait(browser).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-login-status]")))
    assert "wrong e-mail, password or code" in alert.text.lower(), alert.text
    code = browser.find_element(By.ID, "code")
    code.clear()
    code.send_keys(totp(secret, 1))  # the next step: the enrolment used this one
    browser.find_element(By.CSS_SELECTOR, "form[data-login] button[type=submit]").click()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header form[action='/logout']")))
    sign_out(browser)
    sign_in(browser, server, "totp@example.com", code=codes[0])
    sign_out(browser)


def test_api_keys_are_created_shown_once_used_and_revoked(server, browser):
    browser.set_window_size(1280, 900)
    sign_up(browser, server, "keys@example.com")
    browser.get(server.http + "/account")
    browser.find_element(By.ID, "key-name").send_keys("ci")
    browser.find_element(By.ID, "scope-jobs-run").click()  # off: read and write datasets only
    expires = browser.find_element(By.ID, "expires")
    expires.clear()
    expires.send_keys("30")
    browser.find_element(By.CSS_SELECTOR, "form[action='/account/keys'] button[type=submit]").click()
    secret = wait(browser).until(ec.presence_of_element_located((By.ID, "new-secret"))).text
    audit(browser, "account-key-created", phone=True)
    code, me = server.rest("GET", "/v1/me", token=secret)
    assert code == 200 and me["email"] == "keys@example.com"
    code, _ = server.rest("POST", "/v1/jobs", {"pipeline": "quickstart", "dataset_id": "ds_x"}, token=secret)
    assert code == 403, "the key has no jobs:run"
    browser.get(server.http + "/account")
    assert secret not in browser.page_source, "shown once"
    row = browser.find_element(By.XPATH, "//td[text()='ci']/..")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[2] == "datasets:read, datasets:write", cells
    assert cells[3].endswith("UTC"), f"expires in 30 days, not never: {cells}"
    assert "from 127.0.0.1" in cells[4], f"last used, and from where: {cells}"
    audit(browser, "account")
    row.find_element(By.CSS_SELECTOR, "form button").click()
    browser.switch_to.alert.accept()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".flash")))
    code, _ = server.rest("GET", "/v1/me", token=secret)
    assert code == 401


def test_an_operator_disables_an_account_and_its_session_ends(server, browser):
    browser.set_window_size(1280, 900)
    sign_up(browser, server, "victim@example.com")
    browser.get(server.http + "/admin")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not allowed"
    session = browser.get_cookie("doppel_session")
    sign_out(browser)
    sign_up(browser, server, "admin@example.com")
    browser.get(server.http + "/admin")
    audit(browser, "admin")
    browser.get(server.http + "/admin/users")
    audit(browser, "admin-users")
    row = browser.find_element(By.XPATH, "//td[contains(., 'victim@example.com')]/..")
    row.find_element(By.XPATH, ".//button[starts-with(normalize-space(), 'Disable')]").click()
    browser.switch_to.alert.accept()
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".flash")))
    assert "disabled" in browser.find_element(By.XPATH, "//td[contains(., 'victim@example.com')]/..").text
    for page in ("/admin/jobs", "/admin/audit", "/admin/market"):
        browser.get(server.http + page)
        audit(browser, "admin-" + page.rsplit("/", 1)[1])
    browser.get(server.http + "/admin/audit")
    assert "user_disabled" in browser.page_source
    sign_out(browser)
    # The disabled account's old session cookie no longer signs anyone in.
    browser.get(server.http + "/login")
    browser.add_cookie({"name": "doppel_session", "value": session["value"], "path": "/"})
    browser.get(server.http + "/datasets")
    assert "/login" in browser.current_url


def test_the_keyboard_alone_signs_in_and_reaches_every_section(server, browser):
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(1280, 900)
    sign_up(browser, server, "keys-only@example.com")
    sign_out(browser)
    browser.get(server.http + "/login")
    active = lambda: browser.switch_to.active_element  # noqa: E731
    # The page opens with the e-mail field focused; Tab moves through the form.
    assert active().get_attribute("id") == "email"
    active().send_keys("keys-only@example.com", Keys.TAB)
    assert active().get_attribute("id") == "password"
    active().send_keys(PASSWORD, Keys.ENTER)
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, "header form[action='/logout']")))
    from selenium.webdriver.common.action_chains import ActionChains

    def tab():
        ActionChains(browser).send_keys(Keys.TAB).perform()

    # On a fresh page the first Tab reaches the skip link, which moves focus
    # into the content.
    browser.get(server.http + "/datasets")
    tab()
    assert active().text == "Skip to content"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert active().get_attribute("id") == "main"
    # Then, from the top again, every section of the navigation is a link
    # Tab reaches, in reading order.
    browser.get(server.http + "/datasets")
    seen = []
    for _ in range(12):
        tab()
        seen.append(active().text)
    for section in ("Datasets", "Jobs", "Marketplace", "Selling", "Account", "Notifications", "Sign out"):
        assert section in seen, (section, seen)
    sign_out(browser)


def test_forged_posts_are_refused(server, browser):
    browser.set_window_size(1280, 900)
    sign_up(browser, server, "csrf@example.com")
    browser.get(server.http + "/account")
    # No token: refused, nothing created.
    status, text = fetch(browser, "/account/keys", "POST", {"content-type": "application/x-www-form-urlencoded"},
                         "name=stolen&scopes=datasets%3Aread")
    assert status == 403 and "expired or was sent from another site" in text
    # Someone else's token: refused.
    status, _ = fetch(browser, "/account/keys", "POST", {"content-type": "application/x-www-form-urlencoded"},
                      "_csrf=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&name=stolen&scopes=datasets%3Aread")
    assert status == 403
    browser.get(server.http + "/account")
    assert "stolen" not in browser.page_source
    # With the page's token it works (the check is the token, not the page).
    token = csrf(browser)
    status, _ = fetch(browser, "/account/keys", "POST", {"content-type": "application/x-www-form-urlencoded"},
                      f"_csrf={token}&name=mine&scopes=datasets%3Aread")
    assert status == 201
    # A form posted from another origin (another site's page) is refused even
    # with the browser's cookie: the console's cookie is SameSite=Lax and the
    # request's Origin is foreign.
    req = urllib.request.Request(server.http + "/logout", data=f"_csrf={token}".encode(), method="POST",
                                 headers={"origin": "https://evil.example", "content-type": "application/x-www-form-urlencoded",
                                          "cookie": f"doppel_session={browser.get_cookie('doppel_session')['value']}"})
    try:
        urllib.request.urlopen(req)
        raise AssertionError("a cross-origin POST went through")
    except urllib.error.HTTPError as e:
        assert e.code == 403
    browser.get(server.http + "/account")
    assert browser.find_elements(By.CSS_SELECTOR, "header form[action='/logout']"), "still signed in"
    # Cookies: HttpOnly, SameSite=Lax.
    cookie = browser.get_cookie("doppel_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # Static files are cached publicly, so they never set a cookie.
    css = browser.find_element(By.CSS_SELECTOR, 'link[rel="stylesheet"]').get_attribute("href")
    with urllib.request.urlopen(css) as r:
        assert r.headers.get("set-cookie") is None, r.headers
        assert "immutable" in r.headers["cache-control"]
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    sign_out(browser)


def test_every_page_is_audited(server, browser):
    """The pages the suite checked with axe-core (see screenshots/)."""
    assert len(set(AUDITED)) >= 25, sorted(set(AUDITED))
    (SHOTS / "pages.txt").write_text("\n".join(sorted(set(AUDITED))) + "\n")
    # Every screenshot exists and is a PNG.
    for name in set(AUDITED):
        assert (SHOTS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
