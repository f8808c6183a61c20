"""The built HTML as a reader sees it, in a real headless Chromium with no network.

Run by ``make test`` after the strict build (``make browser``), with ``BOOK_HTML`` naming the
built site. The pages are served from 127.0.0.1; every other host is unresolvable, so a page
that needs the network shows it here. For the landing page and every page in the table of
contents it checks that every image loaded, that math was typeset by the book's own MathJax
(no raw ``$$`` left), that the console shows no errors, and that every widget has a static
figure beside it (in the same section). A screenshot of each page goes to ``_build/screens/``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SCREENS = ROOT / "_build" / "screens"
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [c["file"] for part in TOC["parts"] for c in part["chapters"]]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER) or not (HTML / "index.html").is_file(),
    reason="browser test needs chromium, chromedriver and a built book")


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--disable-quic", "--window-size=1280,2200",
                 # no network: every host but the local server fails to resolve
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    SCREENS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(() => done(true), () => done(false));
} else { done(null); }
"""

PAGE_FACTS = """
const text = (() => { const c = document.querySelector('main') || document.body;
  const copy = c.cloneNode(true);
  copy.querySelectorAll('pre, code, script').forEach(e => e.remove());
  return copy.innerText; })();
const broken = Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
  .map(i => i.getAttribute('src'));
const widgets = Array.from(document.querySelectorAll(
  'script[type="application/vnd.jupyter.widget-view+json"], p.widget-fallback'));
const figures = Array.from(document.querySelectorAll('figure img'))
  .filter(i => i.complete && i.naturalWidth > 0);
// "beside": a loaded figure in the same section as the widget, before or after it
const unbacked = widgets.filter(w => !(w.closest('.cell') || w).querySelector('.jupyter-widgets') &&
  !figures.some(f => (w.closest('section') || document.body).contains(f))).length;
return {broken, rawMath: text.includes('$$'), mathSource: document.querySelectorAll(
  '.math, span.math, div.math').length, typeset: document.querySelectorAll('mjx-container').length,
  widgets: widgets.length, unbacked, images: document.images.length};
"""


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline(page, server, browser):
    html = HTML / f"{page}.html"
    assert html.is_file(), f"{page}.html was not built"
    browser.get(f"{server}/{page}.html")
    mathjax = browser.execute_async_script(WAIT_FOR_MATHJAX)
    facts = browser.execute_script(PAGE_FACTS)
    browser.save_screenshot(str(SCREENS / (page.replace("/", "__") + ".png")))
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors on {page}: {errors}"
    assert not facts["broken"], f"images that did not load on {page}: {facts['broken']}"
    if facts["mathSource"]:
        assert mathjax is True, f"MathJax did not start on {page}"
        assert facts["typeset"] > 0, f"math on {page} was not typeset"
    assert not facts["rawMath"], f"raw $$ left in the text of {page}"
    assert facts["unbacked"] == 0, f"{facts['unbacked']} widget(s) on {page} lack a figure"
