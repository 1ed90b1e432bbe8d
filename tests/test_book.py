"""The built book, opened in a real browser (Debian's headless Chromium) and checked offline.

The book comes from the ``smoke_study`` session fixture (tests/conftest.py): the smoke profile's
executed notebooks, built with ``jupyter-book build -W -n --keep-going``. Set ``MASKAD_BOOK_HTML`` to a
built ``_build/html`` folder to check that one instead (quick, when working on the book).

At a 1280 px window the pages are also checked for what a reader sees: wide tables scroll in their
own box, the study's figures are at least 600 px wide, no traceback, raw cell (nan, None, True) or
word about the making of the book, and one glued quantity (GLUED_QUANTITY) shows one value on every
page that cites it. Each of these tests lists every offence, page by page.

Chromium: ``apt-get install -y chromium``. Without it these tests skip on a workstation and fail in
CI (environment variable ``CI`` set), so that a missing browser never passes silently.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import functools
import html as html_lib
import http.server
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
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
    ("book/reproduction_report.html", False, True),  # built on the real edition, with its figure
    ("book/real.html", False, False),
    ("book/lab.html", False, False),
    ("book/executed/04_table1.html", False, True),
    ("book/executed/06_figure3_histograms.html", False, True),
    ("book/executed-real/04_table1.html", False, True),  # the committed real-data edition
]
FIGURE_DIR = "/_images/"  # where Sphinx puts the notebooks' figures (the logo lives in _static)
WINDOW = (1280, 2000)  # Chromium's window in CSS px: the layout checks hold at this width
MIN_FIGURE_WIDTH = 600  # CSS px: a figure of the study narrower than this on the page is too small
MIN_TABLE_FONT = 0.8  # a table's cells keep at least this fraction of the text's font size
# Cell text that says a value is missing or a flag leaked from a data frame, not a result.
RAW_CELL_VALUES = ("nan", "NaN", "None", "True", "False")
ERROR_TEXT = ("Traceback",)  # an exception's output printed into a page
# Words about the making of the book, which a reader has no use for (all-capitals ones match case).
PROCESS_WORDS = ("the issue that", "this round", "next round", "the work set itself",
                 "this session", "the next session", "TODO", "issue", "issues", "uncommitted",
                 "uncommitted_changes", "build log")
# The building machine's folders and the study's run ids: a reader has neither (a reader's own
# folders appear only as commands of the re-run chapter, written with ~ or $MASKAD_HOME).
MACHINE_TEXT = re.compile(r"(?:/work/|/tmp/|/root/|/home/\w|shared/data|\.\./shared/)"
                          r"|(?<![0-9a-f])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12}(?![0-9a-f])")
# MyST that reached the page as text instead of being rendered (a fence nested wrongly, an include
# inside an admonition): a directive's name in braces, its option lines, or a fence of backticks.
RAW_DIRECTIVE = re.compile(r"\{(?:admonition|include|literalinclude|glue|code-cell|note|important|"
                           r"warning|dropdown|figure|bibliography|glossary|term|doc|ref)\}"
                           r"|:(?:class|tags|pyobject|language|emphasize-lines):(?=\s)|`{3,}")
MIN_FIGURE_DPI = 100  # the PNG's own resolution (pHYs): 80 dpi gave panel titles 7 px high
# (executed notebook, glue key): one quantity that every page citing it must show with one value.
GLUED_QUANTITY = ("book/executed-real/04_table1.ipynb", "t1_mean_mean")
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
  // Layout at the window's width: the content column, its tables and figures, and its full text.
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const px = (value) => parseFloat(value) || 0;
  const articleStyle = getComputedStyle(article);
  report.viewport_width = window.innerWidth;
  report.column_width = article.clientWidth - px(articleStyle.paddingLeft) - px(articleStyle.paddingRight);
  report.font_px = px(articleStyle.fontSize);
  const scrolls = (element) => ["auto", "scroll"].includes(getComputedStyle(element).overflowX);
  report.tables = Array.from(article.querySelectorAll("table")).map((table) => {
    let scroller = null;  // the table itself or an element between it and the article
    for (let element = table; element && element !== article; element = element.parentElement) {
      if (scrolls(element)) { scroller = element; break; }
    }
    const cells = Array.from(table.querySelectorAll("td, th"));
    const first = cells.find((cell) => cell.textContent.trim());  // the first header with a text
    return {
      header: first ? first.textContent.trim().replace(/\\s+/g, " ").slice(0, 80) : "",
      scroll_width: table.scrollWidth,
      shown: table.getClientRects().length > 0,
      scroller: scroller && {tag: scroller.tagName.toLowerCase(), class: String(scroller.className),
                             width: scroller.getBoundingClientRect().width},
      font_px: cells.length ? px(getComputedStyle(cells[0]).fontSize) : px(getComputedStyle(table).fontSize),
      short_cells: cells.map((cell) => cell.textContent.trim()).filter((text) => text.length <= 8),
    };
  });
  report.figures = images.filter((img) => (img.currentSrc || img.src).includes("/_images/")).map((img) => ({
    src: img.currentSrc || img.src, natural_width: img.naturalWidth,
    width: img.getBoundingClientRect().width, shown: img.getClientRects().length > 0,
  }));
  const textOf = (element, drop = "") => {  // every text node, collapsed sections included; no scripts or styles
    const copy = element.cloneNode(true);
    copy.querySelectorAll("script, style, noscript" + drop).forEach((node) => node.remove());
    return copy.textContent;
  };
  report.article_text = textOf(article);
  report.page_text = textOf(document.body);
  // without the papermill parameter cells: they show the profile's settings as a re-run sets them
  report.reader_text = textOf(document.body, ", .tag_parameters, .tag_injected-parameters");
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


@contextlib.contextmanager
def serve(folder: Path):
    """(base URL, request paths) of a local server of ``folder`` that injects the probe."""
    requests: list[str] = []
    handler = type("Handler", (_ProbeHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def served_book(book_html):
    with serve(book_html) as served:
        yield served


def open_in_chromium(chromium: str, url: str) -> dict:
    """Load ``url`` headless, offline (every host but 127.0.0.1 unresolvable); return the probe's report."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=20000", "--dump-dom", url,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(rf'<pre id="{PROBE_ID}"[^>]*>(.*?)</pre>', completed.stdout, re.S)
    assert match, (f"{url}: the page did not finish loading in Chromium (no probe report); exit "
                   f"{completed.returncode}; stderr tail:\n{completed.stderr[-2000:]}")
    return json.loads(html_lib.unescape(match.group(1)))


@functools.cache
def probe(chromium: str, url: str) -> dict:
    """open_in_chromium, once per URL in a session (several tests read the same page's report)."""
    return open_in_chromium(chromium, url)


# --------------------------------------------------------------------------- browser
@pytest.mark.parametrize(("page", "has_math", "has_figures"), BROWSER_PAGES)
def test_page_loads_with_images_and_typeset_math(chromium, served_book, page, has_math, has_figures):
    base, _ = served_book
    report = probe(chromium, f"{base}/{page}")

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


# --------------------------------------------------------------------------- layout and text
# What a reader sees at WINDOW's width, on BROWSER_PAGES, every page of the real-data edition and
# every page citing GLUED_QUANTITY. Each test lists every offence on every page before failing.
GLUE_ROLE = re.compile(r"\{glue(?::(?P<kind>text|any))?\}`(?P<body>[^`]+)`")


@pytest.fixture(scope="session")
def book_root(book_html) -> Path:
    """The folder the build was made from (its book/ holds the sources and executed notebooks)."""
    root = Path(book_html).resolve().parents[1]  # <root>/_build/html
    return root if (root / "_toc.yml").is_file() else REPO


def markdown_of(source: Path) -> str:
    """A page's Markdown: a chapter's file, or the Markdown cells of an executed notebook."""
    if source.suffix != ".ipynb":
        return source.read_text(encoding="utf8")
    cells = json.loads(source.read_text(encoding="utf8"))["cells"]
    return "\n".join("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                     for cell in cells if cell["cell_type"] == "markdown")


def glue_citations(text: str) -> list[tuple[str, str, str | None]]:
    """(notebook path or "", key, format spec) of every {glue:text} and {glue} role in ``text``;
    the format is None for {glue}, which pastes the text/plain output as it is."""
    citations = []
    for match in GLUE_ROLE.finditer(text):
        doc, _, rest = match.group("body").rpartition("::")
        if match.group("kind") == "text":
            key, _, spec = rest.partition(":")
            citations.append((doc, key, spec or "s"))
        else:
            citations.append((doc, rest, None))
    return citations


def pasted_text(plain: str, spec: str | None) -> str:
    """What myst-nb pastes for a text/plain output with a format spec (myst_nb.core.variables)."""
    if spec is None:
        return plain
    try:
        value = ast.literal_eval(plain)
    except (SyntaxError, ValueError):
        value = plain
    if spec[-1] == "s":
        value = str(value)
    elif spec[-1] in "bcdoxX":
        value = int(value)
    elif spec[-1] in "eEfFgGn%":
        value = float(value)
    return format(value, spec)


def quantity_citations(root: Path, quantity=GLUED_QUANTITY) -> dict[str, list[str | None]]:
    """Built page (relative .html path) -> the format specs with which its source cites ``quantity``;
    the notebook's own page is always a key (with no spec when its Markdown does not cite it)."""
    notebook = (root / quantity[0]).resolve()
    pages = {Path(quantity[0]).with_suffix(".html").as_posix(): []}
    sources = sorted(path for path in (root / "book").rglob("*")
                     if path.suffix in (".md", ".ipynb") and not any(
                         part.startswith(("_", ".")) for part in path.relative_to(root).parts))
    for source in sources:
        for doc, key, spec in glue_citations(markdown_of(source)):
            if not doc:
                target = source
            elif doc.startswith("/"):
                target = root / doc.lstrip("/")
            else:
                target = source.parent / doc
            if key == quantity[1] and target.resolve() == notebook:
                page = source.relative_to(root).with_suffix(".html").as_posix()
                pages.setdefault(page, []).append(spec)
    return pages


@pytest.fixture(scope="session")
def checked_pages(book_html, book_root) -> list[str]:
    pages = [page for page, _, _ in BROWSER_PAGES] + ["book/reproduction_report.html"]
    pages += sorted(path.relative_to(book_html).as_posix()
                    for path in (book_html / "book" / "executed-real").glob("*.html"))
    # and every text chapter: the re-run chapter and the teaching notes paste records
    pages += sorted(path.relative_to(book_html).as_posix() for path in (book_html / "book").glob("*.html"))
    pages += sorted(quantity_citations(book_root))
    return list(dict.fromkeys(pages))


@pytest.fixture(scope="session")
def page_reports(chromium, served_book, checked_pages, book_html) -> dict[str, dict]:
    base, _ = served_book
    missing = [page for page in checked_pages if not (book_html / page).is_file()]
    assert not missing, f"pages to check that are not in the build: {missing}"
    reports = {page: probe(chromium, f"{base}/{page}") for page in checked_pages}
    for page, report in reports.items():
        assert report["viewport_width"] == WINDOW[0], (
            f"{page}: Chromium laid the page out {report['viewport_width']} px wide, not {WINDOW[0]}")
    return reports


def table_offences(page: str, report: dict) -> list[str]:
    """Tables wider than the content column with no horizontal scroll box that fits the column
    (a table that fits needs none), and tables whose text is shrunk below MIN_TABLE_FONT."""
    offences = []
    column = report["column_width"]
    for table in report["tables"]:
        name = f"{page}: table {table['header']!r}"
        box = table["scroller"]
        if table["shown"] and table["scroll_width"] > column + 1:
            # a scroll box hides the columns a reader needs: every table fits without one
            where = "" if box is None else f" (it scrolls in <{box['tag']} class={box['class']!r}>)"
            offences.append(f"{name} is {table['scroll_width']} px wide in a column of "
                            f"{column:.0f} px{where}")
        if table["shown"] and table["font_px"] < MIN_TABLE_FONT * report["font_px"] - 0.01:
            offences.append(f"{name}: cells at {table['font_px']:.1f} px, below "
                            f"{MIN_TABLE_FONT:g} of the text's {report['font_px']:.1f} px")
    return offences


def figure_offences(page: str, report: dict) -> list[str]:
    """Figures of the study shown narrower than MIN_FIGURE_WIDTH, with the cause: a small file, or
    the page's CSS (or a column narrower than that)."""
    offences = []
    if report["column_width"] < MIN_FIGURE_WIDTH:
        offences.append(f"{page}: the content column is only {report['column_width']:.0f} px "
                        f"wide at {WINDOW[0]} px, so no figure can be {MIN_FIGURE_WIDTH} px wide")
    for number, figure in enumerate(report["figures"], 1):
        name = (f"{page}: figure {number} of {len(report['figures'])} "
                f"({figure['src'].rpartition(FIGURE_DIR)[2]})")
        if not figure["shown"]:
            offences.append(f"{name} is not shown (in a collapsed section or hidden)")
        elif figure["width"] < MIN_FIGURE_WIDTH - 0.5:
            cause = (f"the file is only {figure['natural_width']} px wide"
                     if figure["natural_width"] < MIN_FIGURE_WIDTH else
                     f"the file is {figure['natural_width']} px wide: the page's CSS shrinks it")
            offences.append(f"{name} is shown {figure['width']:.0f} px wide ({cause})")
    return offences


def _phrase(word: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", 0 if word.isupper() else re.I)


def text_offences(page: str, report: dict) -> list[str]:
    """A traceback or a process word anywhere in the page's text (collapsed sections included), a
    table cell reading just nan, None, True..."""
    offences = []
    for word in ERROR_TEXT + PROCESS_WORDS:
        for match in list(_phrase(word).finditer(report["page_text"]))[:3]:
            context = report["page_text"][max(0, match.start() - 60): match.end() + 60]
            offences.append(f"{page}: {word!r} in ...{' '.join(context.split())}...")
    for match in list(MACHINE_TEXT.finditer(report["reader_text"]))[:3]:
        context = report["reader_text"][max(0, match.start() - 60): match.end() + 60]
        offences.append(f"{page}: machine path or run id {match.group(0)!r} in ...{' '.join(context.split())}...")
    for match in list(RAW_DIRECTIVE.finditer(report["page_text"]))[:3]:
        context = report["page_text"][max(0, match.start() - 60): match.end() + 60]
        offences.append(f"{page}: unrendered MyST {match.group(0).strip()!r} in ...{' '.join(context.split())}...")
    for table in report["tables"]:
        raw = sorted({cell for cell in table["short_cells"] if cell in RAW_CELL_VALUES})
        if raw:
            offences.append(f"{page}: table {table['header']!r} has cells reading {', '.join(raw)}")
    return offences


def _occurrences(value: str, text: str) -> int:
    """How often ``value`` appears in ``text`` as a whole (0.794 is not in 10.7945)."""
    return len(re.findall(rf"(?<![\w.]){re.escape(value)}(?![\w]|\.\d)", text))


def glue_offences(plain: str, citations: dict[str, list], texts: dict[str, str]) -> list[str]:
    """Pages (``texts``: page -> its article's text) that do not show the glued text/plain value
    ``plain`` as each of their ``citations`` (page -> format specs) formats it; a page citing it
    nowhere (the notebook's own) must show it in one of the formats used."""
    every_spec = {spec for specs in citations.values() for spec in specs}
    offences = []
    for page, specs in citations.items():
        text = texts[page]
        if not specs:
            shown = sorted({pasted_text(plain, spec) for spec in every_spec | {None}})
            if not any(_occurrences(value, text) for value in shown):
                offences.append(f"{page}: shows it in none of the forms {shown}")
            continue
        for value, wanted in collections.Counter(pasted_text(plain, spec) for spec in specs).items():
            found = _occurrences(value, text)
            if found < wanted:
                offences.append(f"{page}: cites it {wanted} time(s), as {value!r}, "
                                f"but shows {value!r} {found} time(s)")
    return offences


def png_dpi(data: bytes) -> float | None:
    """The horizontal resolution a PNG records (its pHYs chunk, in dots per inch), None if none."""
    position = 8
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind == b"pHYs":
            per_unit, _, unit = struct.unpack(">IIB", data[position + 8:position + 17])
            return per_unit * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None
        position += 12 + length
    return None


def test_every_figure_is_at_least_100_dpi(book_html):
    figures = sorted((book_html / "_images").glob("*.png"))
    assert figures, "the build holds no figure"
    low = []
    for path in figures:
        dpi = png_dpi(path.read_bytes())
        if dpi is None or dpi < MIN_FIGURE_DPI - 0.5:
            low.append(f"{path.name}: {'no resolution recorded' if dpi is None else f'{dpi:.0f} dpi'}")
    assert not low, f"figures below {MIN_FIGURE_DPI} dpi:\n" + "\n".join(low)


def test_tables_fit_their_column(page_reports):
    offences = [o for page, report in page_reports.items() for o in table_offences(page, report)]
    assert not offences, (f"tables overflow the content column at {WINDOW[0]} px:\n"
                          + "\n".join(offences))


def test_figures_of_the_study_are_shown_at_least_600_px_wide(page_reports):
    offences = [o for page, report in page_reports.items() for o in figure_offences(page, report)]
    assert not offences, (f"figures narrower than {MIN_FIGURE_WIDTH} px at {WINDOW[0]} px:\n"
                          + "\n".join(offences))


def test_pages_show_no_traceback_raw_cell_or_process_word(page_reports):
    offences = [o for page, report in page_reports.items() for o in text_offences(page, report)]
    assert not offences, ("pages show errors, raw values or words about the making of the book:\n"
                          + "\n".join(offences))


def test_the_glued_quantity_has_one_value_on_every_page(page_reports, book_root):
    from maskad_core.study.glue import read_glue

    notebook, key = GLUED_QUANTITY
    glued = read_glue(book_root / notebook)
    assert key in glued, f"{notebook} glues no {key!r} (GLUED_QUANTITY names a quantity it does not glue)"
    plain = glued[key]["text/plain"]
    citations = quantity_citations(book_root)
    assert len(citations) >= 2, f"no page but the notebook's own cites {key} of {notebook}"
    texts = {page: page_reports[page]["article_text"] for page in citations}
    offences = glue_offences(plain, citations, texts)
    assert not offences, (f"{key} of {notebook} (glued as {plain}) is not the same on every page "
                          "that cites it:\n" + "\n".join(offences))


# The checks themselves, on pages made to break them: each check can fail.
def _png(width: int, height: int) -> bytes:
    """A grey PNG of the given size (no imaging library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


BAD_PAGE = """<!DOCTYPE html><html><head><style>
body {{ margin: 0; font-size: 16px; }} article {{ width: 700px; padding: 0 10px; }}
.scroll {{ overflow-x: auto; }} .wide {{ overflow-x: auto; width: 900px; }}
.tiny {{ font-size: 9px; }} td {{ padding: 0 40px; white-space: nowrap; }}
</style></head><body><nav>TODO in the menu</nav><article class="bd-article">
<p>Traceback (most recent call last): this round of edits</p><p>A todo list is fine here.</p>
<p>real images at /work/shared/data; Run 81290dd2c388 was re-used; commit 48013e9, 2024 and 0.787</p>
<p>````{{admonition}} The lab as measured</p><p>:class: dropdown</p>
<table><tr><th>bare</th>{cells}</tr><tr><td>nan</td><td>None</td><td>0.5</td></tr></table>
<div class="scroll"><table><tr><th>scrolls</th>{cells}</tr><tr><td>False</td></tr></table></div>
<div class="wide"><table><tr><th>box too wide</th>{cells}</tr></table></div>
<table class="tiny"><tr><th>tiny</th></tr></table>
<img src="/_images/small.png"><img src="/_images/large.png" style="width: 300px">
<img src="/_images/fits.png" style="max-width: 100%"><img src="/_static/logo.png">
</article></body></html>
"""


def test_the_checks_catch_a_page_made_to_fail_them(chromium, tmp_path):
    (tmp_path / "_images").mkdir()
    (tmp_path / "_static").mkdir()
    for name, width in (("small", 400), ("large", 1200), ("fits", 1500)):
        (tmp_path / "_images" / f"{name}.png").write_bytes(_png(width, 20))
    (tmp_path / "_static" / "logo.png").write_bytes(_png(50, 20))
    (tmp_path / "bad.html").write_text(BAD_PAGE.format(cells="<th>a long column</th>" * 12))
    with serve(tmp_path) as (base, _):
        report = open_in_chromium(chromium, f"{base}/bad.html")

    assert report["viewport_width"] == WINDOW[0] and report["column_width"] == 700
    tables = "\n".join(table_offences("bad", report))
    assert "table 'bare' is" in tables
    # a scroll box that fits the column no longer excuses a table wider than the column
    assert "table 'scrolls' is" in tables and "(it scrolls in <div class='scroll'>)" in tables
    assert "table 'box too wide' is" in tables
    assert "table 'tiny': cells at 9.0 px" in tables
    figures = figure_offences("bad", report)
    assert figures == [  # fits.png is shown 700 px wide; the logo is no figure
        "bad: figure 1 of 3 (small.png) is shown 400 px wide (the file is only 400 px wide)",
        "bad: figure 2 of 3 (large.png) is shown 300 px wide (the file is 1200 px wide: "
        "the page's CSS shrinks it)"]
    text = "\n".join(text_offences("bad", report))
    assert "'Traceback' in" in text and "'this round' in" in text
    assert "'TODO' in ...TODO in the menu" in text and text.count("'TODO' in") == 1  # not "todo"
    assert "bad: table 'bare' has cells reading None, nan\n" in text  # not 0.5
    assert "table 'scrolls' has cells reading False" in text
    assert "machine path or run id '/work/'" in text and "run id '81290dd2c388'" in text
    assert "'48013e9'" not in text and "'2024'" not in text  # 7 hex digits, a year: no run id
    assert "unrendered MyST '````'" in text and "'{admonition}'" in text and "':class:'" in text


def test_png_resolution_is_read_from_its_header():
    plain = _png(10, 2)
    assert png_dpi(plain) is None  # no pHYs chunk: no resolution recorded
    chunk = struct.pack(">IIB", 5906, 5906, 1)  # 5906 dots per metre = 150 dpi
    phys = struct.pack(">I", len(chunk)) + b"pHYs" + chunk + struct.pack(">I", zlib.crc32(b"pHYs" + chunk))
    with_phys = plain[:33] + phys + plain[33:]  # after the signature (8) and IHDR (25)
    assert round(png_dpi(with_phys)) == 150


def test_glue_citations_and_their_pages(tmp_path):
    assert glue_citations("a {glue:text}`x.ipynb::k:.3f` b {glue}`k` c {glue:text}`j` "
                          "{glue:text}`../y.ipynb::k` {glue:md}`k`") == [
        ("x.ipynb", "k", ".3f"), ("", "k", None), ("", "j", "s"), ("../y.ipynb", "k", "s")]
    assert pasted_text("0.79449", ".3f") == "0.794" and pasted_text("'E2D4'", "s") == "E2D4"
    assert pasted_text("0.7", None) == "0.7" and pasted_text("3", "d") == "3"

    book = tmp_path / "book"
    (book / "real").mkdir(parents=True)
    (book / "cpu").mkdir()
    notebook = {"cells": [{"cell_type": "markdown", "source": ["mean {glue:text}`k:.2f`"]},
                          {"cell_type": "code", "source": "{glue:text}`k:.5f`", "outputs": []}]}
    (book / "real" / "nb.ipynb").write_text(json.dumps(notebook))
    (book / "cpu" / "nb.ipynb").write_text(json.dumps({"cells": []}))
    (book / "chapter.md").write_text("{glue:text}`real/nb.ipynb::k:.3f` and {glue}`real/nb.ipynb::k`"
                                     " but {glue:text}`cpu/nb.ipynb::k:.3f` {glue:text}`real/nb.ipynb::j`")
    (book / "other.md").write_text("{glue:text}`/book/real/nb.ipynb::k:.1f`")
    (book / "none.md").write_text("{glue:text}`cpu/nb.ipynb::k:.3f`")
    citations = quantity_citations(tmp_path, ("book/real/nb.ipynb", "k"))
    assert citations == {"book/real/nb.html": [".2f"], "book/chapter.html": [".3f", None],
                         "book/other.html": [".1f"]}

    texts = {"book/real/nb.html": "mean 0.79", "book/chapter.html": "0.794 and 0.79449",
             "book/other.html": "0.8"}
    assert glue_offences("0.79449", citations, texts) == []
    texts.update({"book/chapter.html": "0.794 and 0.7", "book/other.html": "10.8 and 0.85"})
    assert glue_offences("0.79449", citations, texts) == [
        "book/chapter.html: cites it 1 time(s), as '0.79449', but shows '0.79449' 0 time(s)",
        "book/other.html: cites it 1 time(s), as '0.8', but shows '0.8' 0 time(s)"]
    assert glue_offences("0.79449", {"own.html": [], "a.html": [".3f"]},
                         {"own.html": "0.795", "a.html": "0.794"}) == [
        "own.html: shows it in none of the forms ['0.794', '0.79449']"]


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
    from maskad_core.study import paper

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

    from maskad_core.study import paper

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


def test_the_report_takes_its_one_seed_rule_from_the_code(book_extension, tmp_path):
    """The comparison words are glued by the notebooks (maskad_core.study.headline); the extension only
    quotes the one-seed rule, read from the code, so the glossary cannot drift from it."""
    rule = book_extension._module_constant("study.headline", "INTERVAL_RULE")
    assert "paired difference" in rule and "95% intervals do not overlap" in rule and "level" in rule


def test_the_budget_records_have_their_own_section_and_a_missing_one_says_so(book_extension, tmp_path):
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "cpu.md").write_text("# Costs\n\ncpu costs\n\n## On two threads\n")
    (results / "budget.md").write_text("the epochs curve\n")
    (results / "budget.json").write_text(json.dumps({"chosen_epochs": 2, "curve": [
        {"epochs": 1, "mean_image_auroc": 0.66}, {"epochs": 2, "mean_image_auroc": 0.704},
        {"epochs": 20, "mean_image_auroc": 0.71}]}))
    subs, problems = book_extension.bench_substitutions(str(tmp_path))
    assert not problems
    assert "the epochs curve" in subs["budget_results"] and "the epochs curve" not in subs["bench_results"]
    assert "study_budget.md`**: not measured" in subs["budget_results"]
    # a results file's headings sit under the chapter's section, not beside its title
    assert "\n### Costs\n" in subs["bench_results"] and "\n#### On two threads" in subs["bench_results"]
    assert (subs["budget_chosen_epochs"], subs["budget_chosen_auroc"]) == ("2", "0.704")
    assert (subs["budget_longest_epochs"], subs["budget_longest_auroc"]) == ("20", "0.710")
    assert subs["budget_lowest_auroc"] == "0.660"


def test_the_epochs_comparison_puts_each_recorded_budget_in_a_column(book_extension, tmp_path):
    def section(epochs, bottle):
        entry = {"mean": bottle, "std": 0.01, "ci": [bottle - 0.05, bottle + 0.05]}
        arms = {key: {"train_minutes": [epochs / 10], "per_category": {"bottle": {"auroc": entry}}}
                for key in ("complementary|none", "random|none", "complementary|per_image")}
        return {"profiles": [{"profile": "real", "config": {"epochs": epochs}, "arms": arms}]}

    assert "Only one budget" in book_extension.epochs_comparison_table(tmp_path)
    (tmp_path / "quality.json").write_text(json.dumps(section(2, 0.88)))
    (tmp_path / "quality-real-epochs20.json").write_text(json.dumps(section(20, 0.98)))
    table = book_extension.epochs_comparison_table(tmp_path).splitlines()
    assert table[0] == "| category | arm | 2 epochs | 20 epochs |"
    assert table[2].startswith("| bottle | complementary | 0.880 ± 0.010 [0.830, 0.930] | 0.980 ± 0.010")
    assert table[-1] == "| longest training | minutes | 0.2 | 2.0 |"
