"""The documentation: a short README whose links resolve, a site whose nav and pages agree, a design page whose
layer diagram is the one the code draws (scripts/layers_diagram.py), and no file pointing outside the repository.
The site itself is built by tox's docs env (`mkdocs build --strict`: broken links and anchors fail there)."""

from __future__ import annotations

import configparser
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LINES = 250
# spelled in pieces, so that this file does not match what it looks for
OUTSIDE = [re.compile(p) for p in (r"DESIGN(\.md| §)", re.escape(".." + "/shared"), re.escape("/" + "work/"))]
# mentions this branch may not edit, each the owner's to remove: file -> the pattern it still holds
KNOWN_OUTSIDE = {
    # the real-data fixture's default location beside the checkout (BENCH_REAL_DATA overrides it)
    "tests/conftest.py": OUTSIDE[1].pattern,
}


def diagram_script():
    """scripts/layers_diagram.py, loaded as a module."""
    return load_script("layers_diagram")


def nav_pages() -> list[str]:
    """Every page the site's nav lists (mkdocs.yml; its Python tags are read as nothing)."""
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=loader)
    pages, todo = [], list(config["nav"])
    while todo:
        item = todo.pop(0)
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            todo = value + todo
        else:
            pages.append(value)
    return pages


def slug(heading: str) -> str:
    """A heading's anchor as Python-Markdown's toc and GitHub make it (for the text these pages use)."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", page.read_text(), re.M)}


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_LINES, f"README.md has {lines} lines; keep it to {README_LINES} and move the rest to docs/"


def test_nav_and_pages_agree():
    listed = nav_pages()
    missing = [p for p in listed if not (DOCS / p).is_file()]
    assert not missing, f"pages in the mkdocs.yml nav that do not exist: {missing}"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "_incoming" not in p.parts}
    assert pages - set(listed) == set(), f"pages under docs/ that the nav does not list: {sorted(pages - set(listed))}"
    assert len(listed) == len(set(listed)), "a page is listed twice in the nav"


def test_tox_docs_env_installs_the_docs_extra():
    """tox's docs env lists the docs extra's requirements itself (installing the package would install torch and the
    rest for a build that reads the sources statically): the two lists must stay the same."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["docs"]
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert "docs" in [e.strip() for e in tox["tox"]["envlist"].split(",")], "tox's envlist does not run the docs env"
    deps = tox["testenv:docs"]["deps"].split()
    assert sorted(deps) == sorted(extra), f"tox.ini [testenv:docs] deps {deps} differ from the docs extra {extra}"
    assert "mkdocs build --strict" in tox["testenv:docs"]["commands"]


def test_readme_links_resolve():
    """The README is not part of the site (mkdocs does not check it): its relative links and anchors are checked
    here, so that they work on GitHub."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links), "the README links to no docs page"
    broken = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # a URL
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        if not target.is_file() or (anchor and anchor not in anchors(target)):
            broken.append(link)
    assert not broken, f"README links that do not resolve: {broken}"


def test_no_file_points_outside_the_repository():
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    found = {}
    for name in filter(None, files):
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # a binary file, or one deleted in the work tree
        hits = sorted({p.pattern for p in OUTSIDE if p.search(text)})
        if hits:
            found[name] = hits
    unexpected = {name: hits for name, hits in found.items() if hits != [KNOWN_OUTSIDE.get(name)]}
    assert not unexpected, f"files that point outside the repository (point at docs/ instead): {unexpected}"
    stale = sorted(set(KNOWN_OUTSIDE) - set(found))
    assert not stale, f"KNOWN_OUTSIDE lists files that no longer point outside; remove them from it: {stale}"


def test_design_page_holds_the_diagram_the_code_draws():
    script = diagram_script()
    shown = script.block_in((DOCS / "design.md").read_text())
    assert shown == script.block(), ("docs/design.md shows another layer diagram than the code draws; "
                                     "redraw it: python scripts/layers_diagram.py --write docs/design.md")


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_diagram_counts_function_level_imports_and_marks_climbs(tmp_path):
    write_package(tmp_path, {
        "bench/__init__.py": "",
        "bench/core/__init__.py": "def late():\n    from bench.runner import go  # climbs from layer 1 to 4\n",
        "bench/core/eps.py": "from . import late\n",  # within its unit: no edge
        "bench/runner.py": "from bench.core.eps import late\nimport attacks.apgd\n",
        "bench/report/command.py": "from ..runner import go\n",  # a command module: the cli layer
        "bench/novel.py": "import bench.core\n",  # a unit the layer order does not name
        "attacks/__init__.py": "",
        "attacks/apgd.py": "import importlib\nimportlib.import_module('bench.core')\nimport torch\n",
    })
    script = diagram_script()
    units, edges = script.unit_edges(tmp_path)
    assert units == {"bench", "bench.core", "bench.runner", "bench.report.command", "bench.novel", "attacks"}
    assert edges == {("bench.core", "bench.runner"), ("bench.runner", "bench.core"), ("bench.runner", "attacks"),
                     ("bench.report.command", "bench.runner"), ("bench.novel", "bench.core"),
                     ("attacks", "bench.core")}
    drawn = script.mermaid(units, edges)
    assert "bench_core -.-> bench_runner" in drawn and "bench_runner --> bench_core" in drawn
    assert "bench_novel -.-> bench_core" in drawn  # an unplaced unit's edges are dotted until it is placed
    layer_of_line = {}
    for line in drawn.splitlines():
        if "subgraph" in line:
            current = line
        elif '["' in line:
            layer_of_line[line.split('["')[1].rstrip('"]')] = current
    assert "5 · cli" in layer_of_line["bench.report.command"]
    assert "not in the layer order" in layer_of_line["bench.novel"]


def test_diagram_write_replaces_only_its_block():
    script = diagram_script()
    page = f"# Design\n\nbefore\n\n{script.BEGIN}\nold diagram\n{script.END}\n\nafter\n"
    new = script.with_block(page, "```mermaid\nflowchart TB\n```")
    assert new == f"# Design\n\nbefore\n\n{script.BEGIN}\n```mermaid\nflowchart TB\n```\n{script.END}\n\nafter\n"
    assert script.block_in(new) == "```mermaid\nflowchart TB\n```"
    with pytest.raises(SystemExit, match="markers"):
        script.with_block("# Design without markers\n", "x")


def test_the_micro_datasets_table_says_what_the_code_holds_out():
    """Each micro dataset's row on the suites page names its role, class count and what it holds out, in the words
    of its definition (bench/micro/datasets.py)."""
    from bench.micro.datasets import DATASETS

    page = (ROOT / "docs" / "guide" / "suites.md").read_text()
    for name, spec in DATASETS.items():
        row = next((line for line in page.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"no row for {name} in docs/guide/suites.md"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == spec.role and cells[2].startswith(f"{len(spec.classnames)} ") and \
            cells[3] == spec.holds_out, row
