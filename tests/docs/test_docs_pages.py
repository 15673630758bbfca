"""What the built pages tell users, checked against what the code does: every YAML snippet is a valid
config, required keys read as required, install commands work from a checkout, every example is
shown and valid, and the site works opened from disk. Each test names the docs review error it
keeps from coming back (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from ludwig_llm.errors import UserError
from ludwig_llm.schema import load_config
from tests.docs.site_helpers import (
    CHROMIUM,
    INVALID_CONFIG,
    NOT_A_CONFIG,
    REPO,
    article_of,
    assert_no_raw_jinja,
    chromium_dump_dom,
    field_items,
    missing,
    page_file,
    text_blocks,
    text_of,
    yaml_blocks,
)

MINIMAL = {
    "base_model": "smollm2-135m-instruct",
    "input_features": [{"name": "input", "type": "text"}],
    "output_features": [{"name": "response", "type": "text"}],
}
# A snippet is a fragment of a config; it is valid if it completes one of these into a valid config
# (adapters need a fine-tuning trainer, category outputs the `none` one).
BASES = [{**MINIMAL, "trainer": {"type": "finetune"}}, {**MINIMAL, "trainer": {"type": "none"}}]
EXAMPLE_CONFIGS = sorted(
    path for path in (REPO / "examples").rglob("*.yaml") if "base_model" in path.read_text(encoding="utf-8")
)


def _pages(site: Path) -> List[Path]:
    return sorted(page for page in site.rglob("*.html") if page.name != "404.html")


def _merge(base: Dict[str, Any], snippet: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in snippet.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def _config_problem(data: Dict[str, Any]) -> str:
    try:
        load_config(data)
        return ""
    except UserError as error:
        return str(error)


def _snippet_problem(text: str) -> str:
    """'' when the snippet completes a minimal config into a valid one, else why not."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return f"not a mapping: {text[:80]!r}"
    problems = [_config_problem(_merge(base, data)) for base in BASES]
    return "" if not all(problems) else "\n".join(problems)


def test_every_yaml_snippet_on_every_page_is_a_valid_config(site):
    """Review error 4 (a strategy snippet without `backend.type: ray` failed once pasted), for every block.
    A block marked as an invalid config must be refused, with the problems the page shows after it."""
    checked, failures = 0, []
    for page in _pages(site):
        article = article_of(page)
        for i, (text, marker, end) in enumerate(yaml_blocks(article)):
            if marker == NOT_A_CONFIG:
                continue
            checked += 1
            where = f"{page.relative_to(site)} block {i}"
            if marker == INVALID_CONFIG:  # a whole config, shown because it is refused
                problem = _config_problem(yaml.safe_load(text))
                shown = text_blocks(article[end:])[:1]
                expected = [line.strip() for line in (shown[0] if shown else "").splitlines() if line.startswith("  - ")]
                if not problem or not expected or any(line not in problem for line in expected):
                    failures.append(f"{where} (marked invalid): the page shows {expected}, check_config says {problem!r}")
                continue
            problem = _snippet_problem(text)
            if problem:
                failures.append(f"{where}:\n{text}\n-> {problem}")
    assert checked >= 40, f"only {checked} YAML blocks found: is the block pattern still right?"
    assert not failures, "\n\n".join(failures)


def test_a_snippet_missing_a_required_key_is_caught():
    assert _snippet_problem("backend:\n  trainer:\n    strategy:\n      type: fsdp\n")
    assert not _snippet_problem("backend:\n  type: ray\n  trainer:\n    strategy:\n      type: fsdp\n")


def test_strategy_snippets_name_the_ray_backend(site):
    article = article_of(page_file(site, "user_guide/distributed_training"))
    strategies = [yaml.safe_load(text) for text, _, _ in yaml_blocks(article) if "strategy:" in text]
    assert len(strategies) >= 3
    for data in strategies:
        assert data["backend"]["type"] == "ray", data


def test_required_keys_read_as_required(site):
    """Review error 1: `type` of features and trainers and quantization `bits` were shown with a default."""
    expected = {
        "configuration/trainer": ("type", 10),  # six trainer types and four reward types
        "configuration/features/text_features": ("type", 2),
        "configuration/features/category_features": ("type", 3),  # the feature and its two decoders
        "configuration/large_language_model": ("bits", 2),
    }
    for name, (key, count) in expected.items():
        entries = field_items(article_of(page_file(site, name))).get(key, [])
        assert len(entries) == count, f"{name}: {len(entries)} entries for {key!r}"
        for entry in entries:
            assert "required" in entry and "default:" not in entry, f"{name}: {entry!r}"


def test_extras_commands_work_from_a_checkout(site):
    """Review error 3: `pip install "ludwig_llm[ray]"` works only once published; pages give the checkout form too."""
    for page in _pages(site):
        text = text_of(article_of(page))
        for extra in re.findall(r'pip install "ludwig_llm\[([a-z,]+)\]"', text):
            assert f'pip install -e ".[{extra}]"' in text, f"{page.relative_to(site)}: no checkout command for [{extra}]"
    assert 'pip install -e ".[ray]"' in text_of(article_of(page_file(site, "user_guide/distributed_training")))


def test_getting_started_gives_the_cpu_wheel_index(site):
    """Review error 5: the torch pin picks the CPU build only where a CPU wheel is at hand."""
    text = text_of(article_of(page_file(site, "getting_started")))
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text


def test_ray_block_with_changed_values_says_it_is_an_example(site):
    """Review error 6: `num_workers: 2, use_gpu: true` above a field list whose defaults are 1 and false."""
    text = text_of(article_of(page_file(site, "user_guide/distributed_training")))
    assert (
        "Example values, not the defaults: backend.trainer.num_workers: 2 (default 1), "
        "backend.trainer.use_gpu: true (default false)." in text
    )


def test_default_prompt_templates_are_on_the_llm_page(site):
    """Review error 7: the default templates of ludwig_llm/schema/template.py never appeared."""
    from docs_macros.schema_docs import get_default_prompt_templates

    article = article_of(page_file(site, "configuration/large_language_model"))
    blocks = text_blocks(article)
    for default in get_default_prompt_templates():
        assert default["template"].strip() in [block.strip() for block in blocks], default


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_example_config_is_valid_and_shown_on_a_page(site, path):
    """Review error 8: example configs linked from no page. Each is shown whole, under its path."""
    load_config(str(path))
    relative = str(path.relative_to(REPO))
    content = " ".join(path.read_text(encoding="utf-8").split())
    shown_on = [
        page for page in _pages(site)
        if relative in text_of(article_of(page)) and content in " ".join(text_of(article_of(page)).split())
    ]
    assert shown_on, f"{relative} is not shown (path and content) on any page"
    assert page_file(site, "examples") in shown_on, f"{relative} is missing from the examples gallery"


def test_example_configs_are_found():
    names = {str(p.relative_to(REPO)) for p in EXAMPLE_CONFIGS}
    assert {"examples/quickstart/config.yaml", "examples/icl_sentiment/config.yaml",
            "examples/configs/llama2_lora_4bit_finetune.yaml"} <= names
    assert "examples/ray_cluster/cluster.yaml" not in names  # Ray's cluster file, not a config


def _internal_links(page: Path) -> List[str]:
    links = re.findall(r'<(?:a|link)\b[^>]*\bhref="([^"]*)"', page.read_text(encoding="utf-8"))
    return [link for link in links if not urlsplit(link).scheme and not link.startswith(("#", "//", "mailto:"))]


def test_links_work_from_disk(site):
    """Review error 9: opened from disk, links went to folders (a browser lists the folder)."""
    checked = 0
    for page in _pages(site):  # 404.html links from the site root on purpose: a server shows it at any path
        for link in _internal_links(page):
            path = unquote(urlsplit(link).path)
            if not path:
                continue
            target = (page.parent / path).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: link {link!r} is not a file"
            checked += 1
    assert checked > 50
    assert (site / "search" / "search_index.js").is_file(), "no inlined search index for file:// pages"


def test_sitemap_lists_every_page(site):
    """Review error 10: sitemap.xml was empty without `site_url`."""
    sitemap = (site / "sitemap.xml").read_text(encoding="utf-8")
    locations = re.findall(r"<loc>([^<]+)</loc>", sitemap)
    for page in _pages(site):
        relative = page.relative_to(site).as_posix()
        assert any(loc.endswith("/" + relative) for loc in locations), f"{relative} missing from sitemap.xml"


@pytest.mark.slow  # chromium
def test_search_runs_on_a_page_opened_from_disk(site, tmp_path):
    """Review error 9: search did not run on file:// pages. `?q=` makes Material search on load."""
    if CHROMIUM is None:
        missing("chromium is not installed (CI installs Debian's chromium package)")
    dom = chromium_dump_dom(page_file(site, "index").as_uri() + "?q=quantization", tmp_path / "profile")
    found = re.search(r'class="md-search-result__meta">([^<]*)<', dom)
    assert found and re.match(r"\d+ matching documents?", found.group(1)), f"no search results: {found and found.group(1)!r}"


NEW_PAGES = ["examples", "getting_started", "user_guide/distributed_training", "user_guide/troubleshooting",
             "user_guide/editor_autocompletion", "user_guide/using_a_trained_model", "tutorials/cpu_to_gpu_to_cluster",
             "tutorials/few_shot_retrieval", "tutorials/fine_tune_or_prompt", "reference/python_api",
             "configuration/features/dataset_formats", "user_guide/deployment", "user_guide/coming_from_ludwig",
             "user_guide/preference_training"]


@pytest.mark.slow  # chromium
@pytest.mark.parametrize("name", NEW_PAGES)
def test_page_opened_from_disk_in_a_browser(site, tmp_path, name):
    if CHROMIUM is None:
        missing("chromium is not installed (CI installs Debian's chromium package)")
    dom = chromium_dump_dom(page_file(site, name).as_uri(), tmp_path / "profile")
    article = dom[dom.index("<article"): dom.index("</article>")]
    assert_no_raw_jinja(article, f"{name} in the browser")
    for heading in re.findall(r'<h2 id="([^"]+)"', article_of(page_file(site, name))):
        assert f'id="{heading}"' in article, f"{name}: section {heading!r} missing in the browser"
    # Material's JavaScript swaps `no-js` for `js` on <html>: it ran on the file:// page.
    assert re.search(r'<html[^>]*class="[^"]*\bjs\b', dom), f"{name}: Material's JavaScript did not run"
