"""`bench report --html`: one self-contained page, rendered in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from report_synth import add_cell, standard_grid

from bench.cli import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Appended to a copy of the page in the test only (the report itself has no script): once everything has loaded,
# record what the browser actually rendered into an attribute that --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const table = document.querySelector("table#results");
  document.body.setAttribute("data-probe", JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    tableRows: table ? table.tBodies[0].rows.length : -1,
    tableVisible: table ? table.getBoundingClientRect().width > 0 : false,
    headers: table ? [...table.tHead.rows[0].cells].map(c => c.textContent) : [],
  }));
});
</script>"""


def make_report(tmp_path):
    standard_grid(tmp_path)
    add_cell(tmp_path, "clip", "novel-shapes", "4/255", 0.0, extra_rows=[{"metric": "sanity:eps_monotone",
                                                                          "value": 0.0}],
             started_at="2026-01-02T00:00:00+00:00")
    gallery = tmp_path / "gallery" / "clip"
    gallery.mkdir(parents=True)
    shutil.copy(_tiny_png(tmp_path), gallery / "example_0.png")
    (gallery / "example_0.txt").write_text("clean: a red circle / adversarial: a dog")
    assert main(["report", "--out", str(tmp_path), "--html", "--cache", str(tmp_path / "no-cache")]) == 0
    return tmp_path / "report" / "report.html"


def _tiny_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "tiny.png"
    plt.imsave(path, [[0.0, 1.0], [1.0, 0.0]])
    return path


def test_page_is_self_contained(tmp_path):
    page = make_report(tmp_path).read_text()
    sources = re.findall(r"""src=['"]([^'"]*)""", page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)  # 3 figures + gallery
    assert "<script" not in page and "http://" not in page and "https://" not in page and "<link" not in page
    assert 'id="results"' in page and "eps_monotone" in page and "a red circle / adversarial: a dog" in page
    assert 'class="flag"' in page and "clip/example_0.png" in page


def find_browser():
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.mark.slow
def test_page_renders_in_headless_chromium(tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium chromium-driver)")
    page = make_report(tmp_path)
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom",
           probed.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    m = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert m, f"page did not finish loading in the browser: {res.stdout[:500]} {res.stderr[-1000:]}"
    probe = json.loads(m.group(1).replace("&quot;", '"'))
    assert probe["tableRows"] == 2 and probe["tableVisible"]
    assert probe["headers"] == ["encoder", "novel-shapes", "novel-colours", "average"]
    assert probe["images"] == 4 and probe["decoded"] == 4
