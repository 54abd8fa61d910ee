"""The server's web pages in a real Chromium: the built-in provider's hosted
checkout page and the return page, as a buyer meets them (the Rust e2e tests
drive the same pages with plain HTTP, which cannot see what a browser
enforces: the page's CSP, form submission, redirects), and the API reference
at /docs."""

import json
import urllib.request
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ADULT, BUYER_SCOPES


def upload(server, key: str) -> str:
    """Adult through the REST multipart upload; returns the dataset id."""
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="adult.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + ADULT.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        server.http + "/v1/datasets",
        data=body,
        method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["id"]


def listed_twin(server):
    """A seller's quickstart twin of Adult, listed at 15.00 EUR."""
    _, session, key = server.account("seller@example.com")
    dataset = upload(server, key)
    code, job = server.rest("POST", "/v1/jobs", {"pipeline": "quickstart", "dataset_id": dataset}, token=key)
    assert code == 201, job
    job = server.wait_job(key, job["id"], timeout=600)
    assert job["state"] == "succeeded", job
    code, listing = server.rest(
        "POST",
        "/v1/listings",
        {"job_id": job["id"], "title": "Adult census twin <b>&</b>", "category": "demographics",
         "price_minor": 1500, "currency": "EUR", "license": "CC-BY-4.0"},
        token=session,
    )
    assert code == 201, listing
    return listing


def status_of(browser) -> tuple[str, str]:
    heading = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "status")))
    return heading.get_attribute("data-status"), heading.text


def test_a_buyer_pays_and_declines_on_the_hosted_page(server, browser):
    listing = listed_twin(server)
    buyer = server.account("buyer@example.com", scopes=BUYER_SCOPES)
    code, purchase = server.rest("POST", f"/v1/listings/{listing['id']}/checkout", {}, token=buyer[2])
    assert code == 201, purchase

    # The hosted page shows the price and what is bought, escaped as text.
    browser.get(purchase["checkout_url"])
    assert browser.title == "doppel checkout"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Pay 15.00 EUR"
    assert browser.find_element(By.ID, "what").text == "Adult census twin <b>&</b>"
    assert browser.find_elements(By.TAG_NAME, "b") == [], "the title is text, not markup"

    # Pressing Pay posts the form; the browser follows the redirect to the
    # return page, which fetched the payment and says the purchase is done.
    browser.find_element(By.ID, "pay").click()
    WebDriverWait(browser, 30).until(ec.url_contains("/v1/checkout/return"))
    state, text = status_of(browser)
    assert state == "completed", text
    assert "ready to download" in text
    _, bought = server.rest("GET", f"/v1/purchases/{purchase['id']}", token=buyer[2])
    assert bought["status"] == "completed"
    code, link = server.rest("GET", f"/v1/purchases/{purchase['id']}/download", token=buyer[2])
    assert code == 200 and link["url"], link

    # The same page again: the checkout is closed, nothing to press.
    browser.get(purchase["checkout_url"])
    assert browser.find_element(By.TAG_NAME, "h1").text == "Checkout closed"
    assert browser.find_elements(By.ID, "pay") == []

    # A buyer whose shop lives on another origin gets sent back there: the
    # page's Content-Security-Policy must let the form's redirect through.
    other = server.account("elsewhere@example.com", scopes=BUYER_SCOPES)
    shop = server.http.replace("127.0.0.1", "localhost") + "/v1/checkout/return"
    code, away = server.rest(
        "POST", f"/v1/listings/{listing['id']}/checkout", {"return_url": shop}, token=other[2]
    )
    assert code == 201, away
    browser.get(away["checkout_url"])
    browser.find_element(By.ID, "decline").click()
    WebDriverWait(browser, 30).until(ec.url_contains("localhost"))
    state, text = status_of(browser)
    assert state == "failed", text
    assert "nothing was charged" in text
    _, declined = server.rest("GET", f"/v1/purchases/{away['id']}", token=other[2])
    assert declined["status"] == "failed"


def test_the_api_reference_renders_in_a_browser(server, browser):
    """/docs is Swagger UI served from the binary (no CDN): it must render
    the whole OpenAPI document, marketplace operations included."""
    browser.get(server.http + "/docs")
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    shown = {e.get_attribute("data-path") for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    with urllib.request.urlopen(server.http + "/openapi.json", timeout=30) as r:
        documented = set(json.loads(r.read())["paths"])
    assert shown == documented, (documented - shown, shown - documented)
    assert {"/v1/listings/{id}/checkout", "/v1/seller/payout-account"} <= shown
    assert browser.find_elements(By.CSS_SELECTOR, ".errors-wrapper") == [], "the document parsed without errors"
