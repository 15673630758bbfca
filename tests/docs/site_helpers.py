"""Building the docs site and reading the built pages, for the docs tests."""

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

from docs_macros.schema_docs import get_generation_schema, schema_class_to_fields

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def mkdocs_build(project: Path, site: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"), "-d", str(site)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy(REPO / "mkdocs.yml", dest / "mkdocs.yml")
    shutil.copytree(REPO / "docs", dest / "docs")
    shutil.copytree(REPO / "docs_macros", dest / "docs_macros", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "examples", dest / "examples")  # pages embed the example configs
    return dest


def page_file(site: Path, name: str) -> Path:
    """The built file of a page (`use_directory_urls` is off, for the offline site: `name.html`)."""
    return site / f"{name}.html"


def article_of(path: Path) -> str:
    page = path.read_text(encoding="utf-8")
    start, end = page.index("<article"), page.index("</article>")
    return page[start:end]


def text_of(fragment: str) -> str:
    text = re.sub(r"<[^>]+>", "", fragment)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()


def without_code(fragment: str) -> str:
    return re.sub(r"<pre.*?</pre>|<code.*?</code>", "", fragment, flags=re.S)


def field_items(article: str) -> dict:
    """Field reference entries by field name: the text of each `<li>` that starts with a field name."""
    items = {}
    for item in re.findall(r"<li>(.*?)</li>", article, flags=re.S):
        name = re.match(r'\s*(?:<p>)?<code class="ll-field">([^<]+)</code>', item)
        if name:
            items.setdefault(name.group(1), []).append(text_of(item))
    return items


def plain(markdown: str) -> str:
    """A description as it reads once rendered: inline-code backticks gone."""
    return re.sub(r"\s+", " ", markdown.replace("`", "")).strip()


def assert_no_raw_jinja(article: str, where: str) -> None:
    prose = without_code(article)
    for marker in ("{{", "}}", "{%", "%}", "{#"):
        assert marker not in prose, f"{where}: raw Jinja {marker!r} in the rendered page"
    assert "Macro Rendering Error" not in article, f"{where}: mkdocs-macros reported an error"


def assert_generation_fields(article: str, where: str) -> None:
    items = field_items(article)
    for field in schema_class_to_fields(get_generation_schema()):
        assert field.name in items, f"{where}: generation field {field.name!r} is not rendered"
        entry = next((text for text in items[field.name] if plain(field.description) in text), None)
        assert entry, f"{where}: description of {field.name!r} missing: {items[field.name]!r}"
        assert f"default: {field.default_yaml}" in entry, f"{where}: default of {field.name!r} missing: {entry!r}"


# HTML comments put right before a YAML block of a page: a block that is not a ludwig_llm config (a Ray
# cluster file), or a config shown because it is refused (followed by a text block with the problems).
NOT_A_CONFIG = "<!-- docs-check: not a ludwig_llm config -->"
INVALID_CONFIG = "<!-- docs-check: invalid config -->"


def _code_text(code: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", code))


def yaml_blocks(article: str) -> list:
    """(text, the HTML comment right before it or '', end offset in `article`) of every YAML code block."""
    pattern = r'(<!--[^>]*-->\s*)?<div class="language-yaml highlight"><pre>.*?<code>(.*?)</code></pre></div>'
    return [
        (_code_text(match.group(2)), (match.group(1) or "").strip(), match.end())
        for match in re.finditer(pattern, article, flags=re.S)
    ]


def text_blocks(article: str) -> list:
    """The text of every ```text code block, in page order."""
    return [_code_text(code) for code in re.findall(r'<div class="language-text highlight"><pre>.*?<code>(.*?)</code>', article, flags=re.S)]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Something only CI is guaranteed to have: a failure there, a skip (with the reason) elsewhere."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def commands(text: str) -> list:
    """`ludwig_llm ...` and `pip install ...` commands in the bash blocks of a Markdown text, whitespace normalized."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for command in line.split("&&"):
                command = " ".join(command.split())
                if command.startswith(("ludwig_llm ", "pip install ")):
                    commands.append(command)
    return commands


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float = 20.0) -> None:
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


def chromium_dump_dom(url: str, profile: Path) -> str:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<article" in done.stdout, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout
