"""The web page's interactive parts in a real browser (headless Chromium + Playwright, as tests/test_serve_browser.py):
Ask&Confirm chips (confirm / reject a proposed detail) and good / bad marks on results (Rocchio feedback)."""
from __future__ import annotations


from conftest import REPO
from test_serve_browser import browser, page, server  # noqa: F401  (fixtures; the module skips without Chromium)


def _wait_cards(page):
    page.locator("#results .card").first.wait_for(timeout=15_000)


def test_ask_and_confirm_chips(server, page):  # noqa: F811
    page.goto(server + "/?q=an+animal")
    _wait_cards(page)
    assert page.locator("#interactive").is_visible()
    page.click("#ask-btn")
    chip = page.locator("#proposals .chip").first
    chip.wait_for(timeout=15_000)
    assert page.locator("#proposals .chip").count() == 5
    detail = chip.get_attribute("data-detail")
    chip.locator("button.yes").click()
    page.locator("#answers").filter(has_text="with: " + detail).wait_for(timeout=15_000)
    page.locator("#status").filter(has_text="an animal, " + detail).wait_for(timeout=15_000)
    page.locator("#proposals .chip").first.wait_for(timeout=15_000)
    assert detail not in page.locator("#proposals .chip").evaluate_all("cs => cs.map(c => c.dataset.detail)")
    (REPO / "artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(REPO / "artifacts" / "interactive.png"), full_page=True)
    second = page.locator("#proposals .chip").first.get_attribute("data-detail")
    page.locator("#proposals .chip").first.locator("button.no").click()
    page.locator("#answers").filter(has_text="without: " + second).wait_for(timeout=15_000)
    # a new search starts over
    page.fill("#q", "a cup of coffee")
    page.keyboard.press("Enter")
    page.locator("#status").filter(has_text="coffee").wait_for(timeout=15_000)
    assert page.locator("#answers").inner_text() == "" and page.locator("#proposals .chip").count() == 0
    assert page.js_errors == []


def test_good_bad_marks_refine(server, page):  # noqa: F811
    page.goto(server + "/?q=an+animal")
    _wait_cards(page)
    paths = page.locator("#results .card .path").all_inner_texts()
    assert paths[0] != "chelsea.png" and "chelsea.png" in paths
    assert page.locator("#feedback-btn").is_disabled()
    cat = page.locator("#results li").nth(paths.index("chelsea.png"))
    cat.locator("button.good").click()
    assert cat.locator("button.good").get_attribute("aria-pressed") == "true"
    page.locator("#results li").first.locator("button.bad").click()
    page.click("#feedback-btn")
    page.locator("#status").filter(has_text="refined by your marks").wait_for(timeout=15_000)
    assert page.locator("#results .card .path").first.inner_text() == "chelsea.png"
    assert page.js_errors == []
