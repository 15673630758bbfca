"""Builds the documentation site for real (mkdocs, mkdocs-macros, material) and checks what came out:
the strict build, the two seed templates rendered as pages of the site, and the LLM page in a browser."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from docs_macros.schema_docs import get_adapter_schemas, get_generation_schema, schema_class_to_fields

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / ".." / "shared" / "seeds"
SEED_PAGES = {"000": "seed_000", "001": "seed_001"}
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _mkdocs_build(project: Path, site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"), "-d", str(site)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"


def _copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(REPO / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(REPO / "docs", dest / "docs")
    shutil.copytree(REPO / "docs_macros", dest / "docs_macros", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "examples", dest / "examples")  # pages embed the example configs
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The repository's own site, built exactly as `mkdocs build --strict` builds it."""
    out = tmp_path_factory.mktemp("site")
    _mkdocs_build(REPO, out)
    return out


@pytest.fixture(scope="module")
def seed_site(tmp_path_factory) -> Path:
    """A copy of the site with both seed templates added as pages next to the LLM page."""
    found = {key: sorted(SEEDS.glob(f"{key}_*.txt")) for key in SEED_PAGES}
    missing = [key for key, paths in found.items() if not paths]
    if missing:
        pytest.fail(f"seed templates {missing} not found in {SEEDS.resolve()} (the shared/ checkout beside the repo)")
    project = _copy_project(tmp_path_factory.mktemp("seed_project") / "project")
    for key, page in SEED_PAGES.items():
        shutil.copy(found[key][0], project / "docs" / "configuration" / f"{page}.md")
    # Seed 001 links to an anchor of a page section we do not have (`#huggingface-encoders`, for
    # Ludwig's ECD models); every other check of the strict build still applies.
    config = project / "mkdocs.yml"
    settings = config.read_text(encoding="utf-8")
    assert "anchors: warn" in settings
    config.write_text(settings.replace("anchors: warn", "anchors: info"), encoding="utf-8")
    out = tmp_path_factory.mktemp("seed_site")
    _mkdocs_build(project, out)
    return out


def _article(path: Path) -> str:
    page = path.read_text(encoding="utf-8")
    start, end = page.index("<article"), page.index("</article>")
    return page[start:end]


def _text(fragment: str) -> str:
    text = re.sub(r"<[^>]+>", "", fragment)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def _without_code(fragment: str) -> str:
    return re.sub(r"<pre.*?</pre>|<code.*?</code>", "", fragment, flags=re.S)


def _field_items(article: str) -> dict:
    """Field reference entries by field name: the text of each `<li>` that starts with a field name."""
    items = {}
    for item in re.findall(r"<li>(.*?)</li>", article, flags=re.S):
        name = re.match(r'\s*(?:<p>)?<code class="ll-field">([^<]+)</code>', item)
        if name:
            items.setdefault(name.group(1), []).append(_text(item))
    return items


def _plain(markdown: str) -> str:
    """A description as it reads once rendered: inline-code backticks gone."""
    return re.sub(r"\s+", " ", markdown.replace("`", "")).strip()


def _assert_no_raw_jinja(article: str, where: str) -> None:
    prose = _without_code(article)
    for marker in ("{{", "}}", "{%", "%}", "{#"):
        assert marker not in prose, f"{where}: raw Jinja {marker!r} in the rendered page"
    assert "Macro Rendering Error" not in article, f"{where}: mkdocs-macros reported an error"


def _assert_generation_fields(article: str, where: str) -> None:
    items = _field_items(article)
    for field in schema_class_to_fields(get_generation_schema()):
        assert field.name in items, f"{where}: generation field {field.name!r} is not rendered"
        entry = next((text for text in items[field.name] if _plain(field.description) in text), None)
        assert entry, f"{where}: description of {field.name!r} missing: {items[field.name]!r}"
        assert f"default: {field.default_yaml}" in entry, f"{where}: default of {field.name!r} missing: {entry!r}"


# ---------------------------------------------------------------------------------------------


def test_site_builds_strict(site):
    llm = site / "configuration" / "large_language_model" / "index.html"
    assert llm.exists()
    assert not (site / "configuration" / "macros").exists(), "the macros include file must not be built as a page"
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue
        _assert_no_raw_jinja(_article(page), str(page.relative_to(site)))


def test_llm_page_renders_every_section(site):
    article = _article(site / "configuration" / "large_language_model" / "index.html")
    text = _text(article)
    for adapter in get_adapter_schemas():
        assert f"type: {adapter.type}" in text
        assert _plain(adapter.description().splitlines()[0]) in text
    _assert_generation_fields(article, "large_language_model")
    for heading in ("base-model", "prompt", "retrieval", "adapter", "quantization", "rope-scaling", "trainer", "generation"):
        assert f'id="{heading}"' in article


def test_site_fetches_nothing_from_the_network(site):
    """The site must work offline: no web fonts, CDN scripts or stylesheets, analytics."""
    for page in site.rglob("*.html"):
        head = page.read_text(encoding="utf-8")
        external = re.findall(r'<(?:link|script)[^>]+(?:href|src)="(https?:)?//[^"]*"', head)
        assert not external, f"{page}: loads external resources {external}"
        assert "fonts.googleapis" not in head and "fonts.gstatic" not in head


def test_cli_reference_page_lists_every_command(site):
    from docs_macros.cli_docs import subcommands

    text = _text(_article(site / "user_guide" / "cli" / "index.html"))
    for name, parser in subcommands().items():
        assert name in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{name}: {option} missing from the CLI reference"


@pytest.mark.parametrize("seed", sorted(SEED_PAGES))
def test_seed_template_renders_through_our_macros(seed_site, seed):
    article = _article(seed_site / "configuration" / SEED_PAGES[seed] / "index.html")
    where = f"seed {seed}"
    _assert_no_raw_jinja(article, where)
    text = _text(article)
    headings = [_text(h) for h in re.findall(r"<h3[^>]*>(.*?)</h3>", article, flags=re.S)]
    for adapter in get_adapter_schemas():
        # 000 titles each adapter section with `adapter.type`, 001 with `adapter.name()` and its description.
        title = adapter.type if seed == "000" else adapter.name()
        assert any(h.rstrip("¶").strip() == title for h in headings), f"{where}: no section for adapter {title!r}"
        assert f"adapter: type: {adapter.type}" in text, f"{where}: no YAML block for adapter {adapter.type!r}"
        if seed == "001":
            assert _plain(adapter.description().splitlines()[0]) in text
    _assert_generation_fields(article, where)
    # The RoPE block is rendered with the seed's updates applied.
    assert "rope_scaling: type: linear factor: 2.0" in text


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    """Something only CI is guaranteed to have: a failure there, a skip (with the reason) elsewhere."""
    if _in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def _commands(text: str) -> list:
    """`ludwig_llm ...` and `pip install ...` commands in the bash blocks of a Markdown text, whitespace normalized."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for command in line.split("&&"):
                command = " ".join(command.split())
                if command.startswith(("ludwig_llm ", "pip install ")):
                    commands.append(command)
    return commands


def test_getting_started_matches_the_readme_quickstart(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = re.search(r"^## Quickstart.*?(?=^## )", readme, flags=re.S | re.M)
    assert quickstart, "README.md has no '## Quickstart' section"
    expected = _commands(quickstart.group(0))
    assert any(c.startswith("ludwig_llm ") for c in expected), "README's quickstart runs no ludwig_llm command"
    shown = _commands((REPO / "docs" / "getting_started.md").read_text(encoding="utf-8"))
    missing = [c for c in expected if c not in shown]
    assert not missing, f"getting_started.md lacks README quickstart commands: {missing}"


def test_getting_started_shows_the_quickstart_config(site):
    text = _text(_article(site / "getting_started" / "index.html"))
    config = (REPO / "examples" / "quickstart" / "config.yaml").read_text(encoding="utf-8")
    for line in filter(str.strip, config.splitlines()):
        assert " ".join(line.split()) in text, f"getting started does not show the quickstart config line {line!r}"


def test_llm_page_in_a_browser(site, tmp_path):
    if CHROMIUM is None:
        _missing("chromium is not installed (CI installs Debian's chromium package)")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/configuration/large_language_model/"
        _wait_for(url)
        dom = _chromium_dump_dom(url, tmp_path / "profile")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert 'id="adapter"' in dom and 'id="generation"' in dom, "adapter/generation sections missing from the DOM"
    article = dom[dom.index("<article"): dom.index("</article>")]
    _assert_no_raw_jinja(article, "browser DOM")
    text = _text(article)
    for adapter in get_adapter_schemas():
        assert f"type: {adapter.type}" in text
    items = _field_items(article)
    for field in schema_class_to_fields(get_generation_schema()):
        assert field.name in items, f"generation field {field.name!r} not in the browser's DOM"
    # Material's JavaScript ran (it rewrites the page in the browser), so this is the page as users see it.
    assert "md-clipboard" in dom or "data-md-component" in dom


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def _chromium_dump_dom(url: str, profile: Path) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<article" in done.stdout, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout
