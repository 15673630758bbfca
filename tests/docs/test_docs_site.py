"""Builds the documentation site for real (mkdocs, mkdocs-macros, material) and checks what came out:
the strict build, a page template of our own that calls every macro of the interface, and the LLM
page in a browser."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from docs_macros.cli_docs import subcommands
from docs_macros.schema_docs import (
    get_adapter_schemas,
    get_generation_schema,
    get_prompt_schema,
    get_quantization_schema,
    get_retrieval_schema,
    get_rope_scaling_schema,
    schema_class_to_fields,
)
from tests.docs.conftest import MACRO_PAGE_NAME
from tests.docs.site_helpers import (
    CHROMIUM,
    REPO,
    article_of,
    assert_generation_fields,
    assert_no_raw_jinja,
    chromium_dump_dom,
    commands,
    field_items,
    free_port,
    missing,
    page_file,
    plain,
    text_of,
    wait_for,
)


# ---------------------------------------------------------------------------------------------


def test_site_builds_strict(site):
    assert page_file(site, "configuration/large_language_model").exists()
    assert not (site / "configuration" / "macros").exists(), "the macros include file must not be built as a page"
    for page in site.rglob("*.html"):
        if page.name == "404.html":
            continue
        assert_no_raw_jinja(article_of(page), str(page.relative_to(site)))


def test_llm_page_renders_every_section(site):
    article = article_of(page_file(site, "configuration/large_language_model"))
    text = text_of(article)
    for adapter in get_adapter_schemas():
        assert f"type: {adapter.type}" in text
        assert plain(adapter.description().splitlines()[0]) in text
    assert_generation_fields(article, "large_language_model")
    for heading in ("base-model", "prompt", "retrieval", "adapter", "quantization", "rope-scaling", "trainer", "generation"):
        assert f'id="{heading}"' in article


def test_site_fetches_nothing_from_the_network(site):
    """The site must work offline: no web fonts, CDN scripts or stylesheets, analytics. (A canonical
    link names the page's published address; browsers load nothing from it.)"""
    for page in site.rglob("*.html"):
        head = page.read_text(encoding="utf-8")
        tags = re.findall(r"<(?:link|script)[^>]+>", head)
        external = [tag for tag in tags if re.search(r'(?:href|src)="(https?:)?//', tag) and 'rel="canonical"' not in tag]
        assert not external, f"{page}: loads external resources {external}"
        assert "fonts.googleapis" not in head and "fonts.gstatic" not in head and "unpkg.com" not in head


def test_cli_reference_page_lists_every_command(site):
    text = text_of(article_of(page_file(site, "user_guide/cli")))
    for name, parser in subcommands().items():
        assert name in text
        for action in parser._actions:
            for option in action.option_strings:
                assert option in text, f"{name}: {option} missing from the CLI reference"


def test_cli_help_texts_read_as_written(site):
    """Review error 2: `<run>/model` in a help text vanished from the HTML table (read as a tag)."""
    text = text_of(article_of(page_file(site, "user_guide/cli")))
    helps = [action.help for parser in subcommands().values() for action in parser._actions if action.help]
    assert any("<run>" in help for help in helps), "no help text with <...> left: this test needs a new case"
    for help in helps:
        if help != "show this help message and exit":
            assert " ".join(help.split()) in text, f"help text not shown as written: {help!r}"


# ---------------------------------------------------------------------------------------------
# The macro interface, through a page template of our own (tests/docs/macro_page.md)


def test_macro_interface_page_renders_every_macro(macro_site):
    article = article_of(page_file(macro_site, f"configuration/{MACRO_PAGE_NAME}"))
    where = "macro interface page"
    assert_no_raw_jinja(article, where)
    text = text_of(article)
    headings = [text_of(h).rstrip("¶").strip() for h in re.findall(r"<h3[^>]*>(.*?)</h3>", article, flags=re.S)]
    for adapter in get_adapter_schemas():
        # One section titled by `adapter.type`, one by `adapter.name()` with its description.
        assert adapter.type in headings, f"{where}: no section for adapter type {adapter.type!r}"
        assert adapter.name() in headings, f"{where}: no section for adapter {adapter.name()!r}"
        assert plain(adapter.description().splitlines()[0]) in text
        assert text.count(f"adapter: type: {adapter.type}") >= 2, f"{where}: YAML blocks for adapter {adapter.type!r}"
    items = field_items(article)
    for cls in (get_prompt_schema(), get_retrieval_schema(), get_quantization_schema(), get_rope_scaling_schema()):
        for field in schema_class_to_fields(cls):
            assert field.name in items, f"{where}: {cls.__name__}.{field.name} is not rendered"
    lora_fields = schema_class_to_fields(get_adapter_schemas()[0], exclude=["type"])
    assert lora_fields and all(f.name in items for f in lora_fields)
    assert_generation_fields(article, where)
    # render_yaml with `updates`: the RoPE block carries them.
    assert "rope_scaling: type: linear factor: 2.0" in text
    for section in ("prompt:", "retrieval:", "quantization: bits: 4", "generation:"):
        assert section in text, f"{where}: no YAML block starting {section!r}"


def test_getting_started_matches_the_readme_quickstart(site):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = re.search(r"^## Quickstart.*?(?=^## )", readme, flags=re.S | re.M)
    assert quickstart, "README.md has no '## Quickstart' section"
    expected = commands(quickstart.group(0))
    assert any(c.startswith("ludwig_llm ") for c in expected), "README's quickstart runs no ludwig_llm command"
    shown = commands((REPO / "docs" / "getting_started.md").read_text(encoding="utf-8"))
    missing = [c for c in expected if c not in shown]
    assert not missing, f"getting_started.md lacks README quickstart commands: {missing}"


def test_getting_started_shows_the_quickstart_config(site):
    text = text_of(article_of(page_file(site, "getting_started")))
    config = (REPO / "examples" / "quickstart" / "config.yaml").read_text(encoding="utf-8")
    for line in filter(str.strip, config.splitlines()):
        assert " ".join(line.split()) in text, f"getting started does not show the quickstart config line {line!r}"


@pytest.mark.slow  # chromium
def test_llm_page_in_a_browser(site, tmp_path):
    if CHROMIUM is None:
        missing("chromium is not installed (CI installs Debian's chromium package)")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/configuration/large_language_model.html"
        wait_for(url)
        dom = chromium_dump_dom(url, tmp_path / "profile")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert 'id="adapter"' in dom and 'id="generation"' in dom, "adapter/generation sections missing from the DOM"
    article = dom[dom.index("<article"): dom.index("</article>")]
    assert_no_raw_jinja(article, "browser DOM")
    text = text_of(article)
    for adapter in get_adapter_schemas():
        assert f"type: {adapter.type}" in text
    items = field_items(article)
    for field in schema_class_to_fields(get_generation_schema()):
        assert field.name in items, f"generation field {field.name!r} not in the browser's DOM"
    # Material's JavaScript ran (it rewrites the page in the browser), so this is the page as users see it.
    assert "md-clipboard" in dom or "data-md-component" in dom


