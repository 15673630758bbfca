"""What `pip install .` installs: the library only. `docs_macros` serves the docs site from the
repository checkout (mkdocs.yml's `module_name`) and imports jinja2, which only the `docs` extra
brings, so installing it as a top-level package would ship a module that fails to import."""

from __future__ import annotations

import runpy
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[2]


def _setup_arguments(monkeypatch) -> dict:
    """The keyword arguments setup.py passes to setuptools.setup, with find_packages really run."""
    captured = {}
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    assert captured, "setup.py did not call setuptools.setup"
    return captured


def test_only_the_library_is_installed(monkeypatch):
    arguments = _setup_arguments(monkeypatch)
    packages = arguments["packages"]
    assert "ludwig_llm" in packages and "ludwig_llm.schema" in packages
    top_level = {name.split(".")[0] for name in packages}
    assert top_level == {"ludwig_llm"}, f"setup.py installs other top-level packages: {sorted(top_level - {'ludwig_llm'})}"
    assert not arguments.get("py_modules"), f"setup.py installs top-level modules: {arguments.get('py_modules')}"


def test_docs_extra_brings_what_the_docs_macros_import(monkeypatch):
    """Building the site from the repository needs the `docs` extra: it must name the docs' own imports."""
    docs_extra = " ".join(_setup_arguments(monkeypatch)["extras_require"]["docs"])
    for requirement in ("mkdocs", "mkdocs-material", "mkdocs-macros-plugin", "jinja2"):
        assert requirement in docs_extra, f"the docs extra lacks {requirement}"
