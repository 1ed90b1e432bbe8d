"""The built book, opened in a real browser (Debian's headless Chromium) and checked offline.

The book comes from the ``smoke_study`` session fixture (tests/conftest.py): the smoke profile's
executed notebooks, built with ``jupyter-book build -W -n --keep-going``. Set ``MASKAD_BOOK_HTML`` to a
built ``_build/html`` folder to check that one instead (quick, when working on the book).

Chromium: ``apt-get install -y chromium``. Without it these tests skip on a workstation and fail in
CI (environment variable ``CI`` set), so that a missing browser never passes silently.
"""

from __future__ import annotations

import functools
import html as html_lib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK_SOURCES = REPO / "book"

# Pages opened in the browser: (page, expects typeset mathematics, expects figures of the study).
# index.html is the redirect that jupyter-book writes to the root chapter.
BROWSER_PAGES = [
    ("index.html", True, False),
    ("book/paper.html", True, False),
    ("book/reproduction_report.html", False, False),
    ("book/executed/04_table1.html", False, True),
    ("book/executed/06_figure3_histograms.html", False, True),
    ("book/executed-real/04_table1.html", False, True),  # the committed real-data edition
]
FIGURE_DIR = "/_images/"  # where Sphinx puts the notebooks' figures (the logo lives in _static)
PROBE_ID = "maskad-probe"
# Injected before </body> of every HTML page served to the browser: once the page, MathJax and every
# image have finished, it writes what it found into a <pre> that --dump-dom prints.
PROBE = """
<script>
window.addEventListener("load", async () => {
  const report = {url: location.href, title: document.title};
  try {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  } catch (error) { report.mathjax_error = String(error); }
  const images = Array.from(document.images);
  for (const img of images) { img.loading = "eager"; }
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener("load", done); img.addEventListener("error", done);
  })));
  report.images = images.map((img) => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
  report.math_elements = document.querySelectorAll(".math").length;
  report.mjx = document.querySelectorAll("mjx-container").length;
  report.mjx_errors = document.querySelectorAll("mjx-merror").length;
  report.mathjax_loaded = Boolean(window.MathJax && MathJax.version);
  report.resources = performance.getEntriesByType("resource").map((entry) => entry.name);
  report.text = document.body.innerText.slice(0, 100000);
  const out = document.createElement("pre");
  out.id = "maskad-probe";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>
"""
assert PROBE_ID in PROBE


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def book_html(request) -> Path:
    override = os.environ.get("MASKAD_BOOK_HTML")
    if override:
        html = Path(override)
        assert (html / "index.html").is_file(), f"MASKAD_BOOK_HTML={override} holds no index.html"
        return html
    smoke = request.getfixturevalue("smoke_study")
    if smoke.html_dir is None:
        pytest.fail(f"the book was not built from the smoke study: {smoke.book_error or 'no _config.yml'}")
    return Path(smoke.html_dir)


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    message = ("Chromium is not installed: the browser test needs Debian's headless Chromium "
               "(`apt-get update && apt-get install -y chromium`, or `make browser`)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message + "; skipped outside CI")


class _ProbeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book; HTML pages get the probe script; requests are recorded."""

    requests: list[str]

    def log_message(self, format, *args):  # quiet; keep the request paths instead
        self.requests.append(self.path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_text(encoding="utf8").replace("</body>", PROBE + "</body>", 1)
        if PROBE_ID not in body:  # a page without </body>, e.g. the index redirect
            body += PROBE
        data = body.encode("utf8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


@pytest.fixture(scope="session")
def served_book(book_html):
    requests: list[str] = []
    handler = type("Handler", (_ProbeHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(book_html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def open_in_chromium(chromium: str, url: str) -> dict:
    """Load ``url`` headless, offline (every host but 127.0.0.1 unresolvable); return the probe's report."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,2000", "--virtual-time-budget=20000", "--dump-dom", url,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(rf'<pre id="{PROBE_ID}"[^>]*>(.*?)</pre>', completed.stdout, re.S)
    assert match, (f"{url}: the page did not finish loading in Chromium (no probe report); exit "
                   f"{completed.returncode}; stderr tail:\n{completed.stderr[-2000:]}")
    return json.loads(html_lib.unescape(match.group(1)))


# --------------------------------------------------------------------------- browser
@pytest.mark.parametrize(("page", "has_math", "has_figures"), BROWSER_PAGES)
def test_page_loads_with_images_and_typeset_math(chromium, served_book, page, has_math, has_figures):
    base, _ = served_book
    report = open_in_chromium(chromium, f"{base}/{page}")

    if page == "index.html":  # the redirect must land on the root chapter
        assert report["url"].endswith("/book/intro.html"), report["url"]
    broken = [img["src"] for img in report["images"] if img["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    assert report["images"], f"{page}: no images at all (not even the logo)"
    if has_figures:
        figures = [img for img in report["images"] if FIGURE_DIR in img["src"]]
        assert figures, f"{page}: no figure of the study on the page"
    assert "mathjax_error" not in report, report.get("mathjax_error")
    if has_math:
        assert report["mathjax_loaded"], f"{page}: MathJax did not load"
        assert report["math_elements"] > 0, f"{page}: no mathematics in the page"
        assert report["mjx"] >= report["math_elements"], (
            f"{page}: {report['math_elements']} formulas but {report['mjx']} typeset by MathJax")
        assert report["mjx_errors"] == 0, f"{page}: {report['mjx_errors']} formulas with TeX errors"
    external = [name for name in report["resources"]
                if not name.startswith((base, "data:", "blob:"))]
    assert not external, f"{page}: the page tried to fetch from outside the book: {external}"


def test_mathjax_is_bundled_not_fetched(book_html):
    """MathJax is served from the book's own _static folder, so pages render offline."""
    page = (book_html / "book" / "paper.html").read_text(encoding="utf8")
    sources = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page, re.I)
    assert sources, "book/paper.html loads no MathJax script"
    for source in sources:
        assert not urlsplit(source).scheme, f"MathJax comes from the network: {source}"
        local = (book_html / "book" / urlsplit(source).path).resolve()
        assert local.is_file(), f"the MathJax script {source} is not in the build"


# --------------------------------------------------------------------------- static checks
class _LinkCollector(HTMLParser):
    LINK_ATTRIBUTES = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src",
                       "iframe": "src", "video": "src", "audio": "src"}

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []  # (tag, rel, url)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("id", "name"):
            if attributes.get(key):
                self.ids.add(attributes[key])
        name = self.LINK_ATTRIBUTES.get(tag)
        if name and attributes.get(name):
            self.links.append((tag, attributes.get("rel") or "", attributes[name]))


@functools.cache
def _parse(path: Path) -> _LinkCollector:
    collector = _LinkCollector()
    collector.feed(path.read_text(encoding="utf8", errors="replace"))
    return collector


def _html_pages(book_html: Path) -> list[Path]:
    return sorted(p for p in book_html.rglob("*.html")
                  if "_static" not in p.relative_to(book_html).parts
                  and "_sources" not in p.relative_to(book_html).parts)


def test_no_broken_internal_links(book_html):
    pages = _html_pages(book_html)
    assert len(pages) >= 10, f"only {len(pages)} pages in {book_html}"
    broken = []
    for page in pages:
        for tag, _, url in _parse(page).links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or url in ("#", ""):
                continue  # external (checked elsewhere), or a button's placeholder
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(book_html)}: <{tag}> {url} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in _parse(target).ids:
                    broken.append(f"{page.relative_to(book_html)}: <{tag}> {url} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:40])


def test_no_asset_is_loaded_from_the_network(book_html):
    """Scripts, style sheets, fonts and images all come from the build (links to sites are fine)."""
    remote = []
    for page in _html_pages(book_html):
        for tag, rel, url in _parse(page).links:
            if tag == "a" or (tag == "link" and rel not in ("stylesheet", "preload", "icon", "modulepreload")):
                continue
            if urlsplit(url).scheme in ("http", "https") or url.startswith("//"):
                remote.append(f"{page.relative_to(book_html)}: <{tag}> {url}")
    assert not remote, "assets fetched from the network:\n" + "\n".join(remote[:40])


def _toc_files(entries) -> list[str]:
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(entry["file"])
        files += _toc_files(entry.get("chapters")) + _toc_files(entry.get("sections"))
        files += _toc_files(entry.get("parts"))
    return files


def test_the_committed_real_table1_shows_bottles_interval_in_the_browser(chromium, served_book):
    base, _ = served_book
    report = open_in_chromium(chromium, f"{base}/book/executed-real/04_table1.html")
    rows = [line for line in report["text"].splitlines() if line.strip().startswith("bottle")]
    assert any(re.search(r"\[[01]\.\d{3}, [01]\.\d{3}\]", row) for row in rows), (
        "the MVTec AD Table 1 page shows no 95% interval on bottle's row:\n" + "\n".join(rows))


def test_every_chapter_of_the_toc_is_built(book_html):
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    chapters = [toc["root"]] + _toc_files(toc.get("parts")) + _toc_files(toc.get("chapters"))
    names = {Path(c).name for c in chapters}
    for needed in ("intro", "paper", "critical_reading", "reproduction_report", "beyond", "rerun",
                   "teaching", "01_mae_baseline_failure", "02_complementary_masking", "03_training",
                   "04_table1", "05_table2_ablation", "06_figure3_histograms"):
        assert needed in names, f"_toc.yml lists no chapter {needed}"
    missing = [c for c in chapters if not (book_html / f"{c}.html").is_file()]
    assert not missing, f"chapters of _toc.yml without a page in the build: {missing}"


def test_solutions_are_hidden_by_default(book_html):
    page = (book_html / "book" / "teaching.html").read_text(encoding="utf8")
    exercises = page.count("Exercise ")
    dropdowns = len(re.findall(r'class="[^"]*\bdropdown\b[^"]*\badmonition\b', page))
    assert exercises >= 5, f"only {exercises} exercises in the teaching notes"
    assert dropdowns >= 5, "the solutions of the teaching notes are not collapsible dropdowns"


# --------------------------------------------------------------------------- sources
def test_prose_types_no_result_by_hand():
    """Numbers with three or more decimals (AUROC-like) come from glue or the paper's data file,
    never typed in the chapters' Markdown."""
    typed = []
    for source in sorted(BOOK_SOURCES.glob("*.md")):
        text = re.sub(r"```.*?```", "", source.read_text(encoding="utf8"), flags=re.S)
        for number in re.findall(r"(?<![\w.{`:])\d+\.\d{3,}\b", text):
            typed.append(f"{source.name}: {number}")
    assert not typed, "numbers typed by hand in the book's chapters:\n" + "\n".join(typed)


# --------------------------------------------------------------------------- the book's extension
@pytest.fixture(scope="module")
def book_extension():
    import importlib
    import sys

    sys.path.insert(0, str(BOOK_SOURCES / "_ext"))
    try:
        yield importlib.import_module("maskad_book")
    finally:
        sys.path.remove(str(BOOK_SOURCES / "_ext"))


def test_paper_arithmetic_is_computed_from_the_data_file(book_extension):
    from maskad_core import paper

    subs = book_extension.paper_substitutions()
    table, printed = paper.table1(), paper.table1_printed_mean()
    assert subs["paper_gain_mkd_table"] == f"{printed['paper'] - printed['MKD']:.3f}"
    assert subs["paper_gain_mkd_table"] != subs["paper_claim_gain_mkd"]  # the text's slip
    assert subs["paper_mean_recomputed_paper"] == f"{table['paper'].mean():.4f}"
    best = (table["paper"] > table.drop(columns="paper").max(axis=1)).sum()
    assert subs["paper_best_count"] == str(best) == str(paper.claims()["categories_best"])
    assert subs["paper_table1"].count("\n") == len(table) + 3  # header, rule, rows, two mean rows


def test_a_claim_the_data_contradict_stops_the_build(book_extension, monkeypatch):
    from sphinx.errors import ConfigError

    from maskad_core import paper

    wrong = dict(paper.claims(), categories_best=paper.claims()["categories_best"] + 1)
    monkeypatch.setattr(paper, "claims", lambda: wrong)
    with pytest.raises(ConfigError, match="best in as many categories"):
        book_extension.paper_substitutions()


def test_launch_buttons_open_the_source_notebooks(book_extension):
    buttons = [
        {"type": "group", "buttons": [
            {"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/executed/03_training.ipynb"},
        ]},
        {"url": "../../_sources/book/executed/03_training.ipynb"},  # the download: stays in the build
    ]
    book_extension.redirect_launch_buttons(None, "book/executed/03_training", "page.html",
                                           {"header_buttons": buttons}, None)
    launch = [b["url"] for b in buttons[0]["buttons"]]
    assert launch == ["https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks/03_training.md"]
    assert (REPO / "notebooks" / "03_training.md").is_file()
    assert buttons[1]["url"] == "../../_sources/book/executed/03_training.ipynb"


def test_launch_buttons_of_the_real_edition_open_the_same_sources(book_extension):
    buttons = [{"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/executed-real/04_table1.ipynb"}]
    book_extension.redirect_launch_buttons(None, "book/executed-real/04_table1", "page.html",
                                           {"header_buttons": buttons}, None)
    assert buttons[0]["url"] == "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/notebooks/04_table1.md"
    other = [{"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=tree/book/intro.md"}]
    book_extension.redirect_launch_buttons(None, "book/intro", "page.html",
                                           {"header_buttons": other}, None)
    assert other[0]["url"].endswith("tree/book/intro.md")  # pages that are not editions keep theirs


def test_glued_values_are_read_back(book_extension, tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    outputs = [
        nbformat.v4.new_output("display_data", data={"application/papermill.record/text/plain": "0.75"},
                               metadata={"scrapbook": {"name": "auroc",
                                                       "mime_prefix": "application/papermill.record/"}}),
        nbformat.v4.new_output("display_data", data={"text/plain": "'E2D4@0.75'"},
                               metadata={"scrapbook": {"name": "cell", "mime_prefix": ""}}),
        nbformat.v4.new_output("stream", name="stdout", text="not glued\n"),
    ]
    notebook.cells = [nbformat.v4.new_code_cell("", outputs=outputs)]
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)
    assert book_extension.read_glue(path) == {"auroc": 0.75, "cell": "E2D4@0.75"}


def test_comparison_words_come_from_the_intervals(book_extension):
    assert book_extension._interval("'[0.704, 0.890]'") == (0.704, 0.89)
    assert book_extension._interval("-") is None
    assert book_extension._interval_words("'higher'") == "higher than"
    assert book_extension._interval_words("not resolved").startswith("not resolved")
    assert book_extension._against_chance((0.52, 0.7)) == "above"
    assert book_extension._against_chance((0.45, 0.7)).startswith("not distinguishable")
    assert book_extension._against_value((0.7, 0.8), 0.895) == "lower than"
