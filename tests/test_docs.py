"""Documentation: the project cites only itself, and every relative link and cited path resolves."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"  # the index: one line per page of docs/design/
DESIGN_DIR = ROOT / "docs" / "design"
# Each page of the design and a section it must hold (pages are cited by code comments and other documents).
DESIGN_PAGES = {"architecture.md": "the-layers", "wire.md": "the-wire", "methods.md": "per-method",
                "mp2.md": "three-stages", "online-mp2.md": "rounds", "predictor.md": "the-predictor",
                "models.md": "models", "formats.md": "run-directory---out", "resume.md": "a-run-mp2_pspy---resume"}
PAGE_LIMIT = 24_000  # characters: a page of the design reads in minutes
# A citation in a code comment or a document: the page and the section's title,
# e.g. predictor/network.py: docs/design/predictor.md, "The predictor".
CITATION = re.compile(r'\b(docs/[\w./-]+\.md), "([^"{}]+)"')
# Spelled in two pieces so that this file does not contain the name it looks for.
OUTSIDE_DOCUMENT = "DESIGN" + ".md"


def project_files() -> list[Path]:
    """Tracked files plus new ones not ignored (so a file not yet committed is checked too)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / name for name in listed.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and not p.is_symlink()]


def text_of(path: Path) -> str | None:
    raw = path.read_bytes()
    return None if b"\0" in raw else raw.decode("utf-8", errors="replace")


def markdown_documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def design_pages() -> list[Path]:
    return sorted(DESIGN_DIR.glob("*.md"))


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def without_code(markdown: str) -> str:
    """The text outside fenced blocks and inline code spans, where a link is a link."""
    return re.sub(r"`[^`]*`", "", without_code_blocks(markdown))


def link_targets(markdown: str) -> list[str]:
    """Targets of inline links and images `[text](target "title")` and of reference definitions."""
    text = without_code(markdown)
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    references = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.M)
    return inline + references


def slug_of(title: str) -> str:
    """The anchor a GitHub-style renderer gives a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The heading anchors a GitHub-style renderer gives a document."""
    out, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", without_code_blocks(markdown), flags=re.M):
        slug = slug_of(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """One line per link of `document` whose file or heading does not exist (named relative to `root`)."""
    name = document.relative_to(root)
    problems = []
    for target in link_targets(document.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        linked = (document.parent / path_part).resolve() if path_part else document
        if not linked.exists():
            problems.append(f"{name}: {target} -> no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            problems.append(f"{name}: {target} -> no heading with anchor #{anchor}")
    return problems


def test_no_file_cites_a_design_document_outside_the_project():
    # README.md is rewritten separately; until then it is expected to be the one failure here.
    citing = [str(p.relative_to(ROOT)) for p in project_files()
              if (text := text_of(p)) is not None and OUTSIDE_DOCUMENT in text]
    assert citing == [], f"these files cite {OUTSIDE_DOCUMENT}, which is not in the project; cite docs/design.md: {citing}"


def test_the_design_pages_exist_and_the_index_links_each():
    pages = {p.name: p for p in design_pages()}
    for name, section in DESIGN_PAGES.items():
        assert name in pages, f"docs/design/{name} is missing"
        assert section in anchors(pages[name].read_text()), f"docs/design/{name} has no section #{section}"
    linked = {(DESIGN.parent / unquote(target.partition("#")[0])).resolve() for target in link_targets(DESIGN.read_text())}
    unlisted = [name for name, page in pages.items() if page.resolve() not in linked]
    assert unlisted == [], f"docs/design.md does not link these pages: {unlisted}"
    long = [f"{name}: {len(page.read_text()):,}" for name, page in pages.items() if len(page.read_text()) > PAGE_LIMIT]
    assert long == [], f"pages of the design longer than {PAGE_LIMIT:,} characters (split them): {long}"


def test_every_cited_section_exists_on_the_page_cited():
    # Code comments and documents cite a section by page and title: docs/design/predictor.md, "The predictor".
    problems = []
    for path in project_files():
        for page, title in CITATION.findall(text_of(path) or ""):
            cited = ROOT / page
            if not cited.is_file():
                problems.append(f'{path.relative_to(ROOT)} cites {page}, "{title}": no such page')
            elif slug_of(title) not in anchors(cited.read_text()):
                problems.append(f'{path.relative_to(ROOT)} cites {page}, "{title}": no such section on that page')
    assert problems == [], "\n".join(problems)


def test_the_citation_check_sees_a_missing_section():
    assert CITATION.findall('x (docs/design/predictor.md, "The predictor") y') == [("docs/design/predictor.md", "The predictor")]
    assert slug_of("`--verify-sync` and `--trace-steps`") == "--verify-sync-and---trace-steps"
    assert slug_of("No such section") not in anchors((DESIGN_DIR / "predictor.md").read_text())


def test_relative_markdown_links_point_to_existing_files():
    problems = [p for document in markdown_documents() for p in broken_links(document)]
    assert problems == [], "\n".join(problems)


def test_project_paths_cited_in_the_design_pages_exist():
    top_level = {p.relative_to(ROOT).parts[0] for p in project_files() if len(p.relative_to(ROOT).parts) > 1}
    total, missing = set(), []
    for page in [DESIGN, *design_pages()]:
        cited = set(re.findall(r"`([^`\s]+)`", page.read_text()))
        paths = {c for c in cited if not re.search(r"[<>{}*]|NNN", c)
                 and (c.endswith(".py") or c.split("/")[0] in top_level and "/" in c)}
        total |= paths
        missing += [f"{page.relative_to(ROOT)}: {c}" for c in sorted(paths) if not (ROOT / c).exists()]
    assert len(total) > 30  # the pages name the files they describe
    assert missing == [], f"the design cites files that do not exist: {missing}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    # The checker itself, on a document with one good and two broken links.
    document = tmp_path / "doc.md"
    (tmp_path / "here.md").write_text("# A title\n")
    document.write_text("[good](here.md#a-title) [gone](missing.md) [bad anchor](here.md#nothing)\n"
                        "`[not a link](inside-code.md)`\n")
    problems = broken_links(document, root=tmp_path)
    assert len(problems) == 2 and "missing.md" in problems[0] and "#nothing" in problems[1], problems
