"""The built docs sites the docs tests read: each built once per session (a build takes seconds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.docs.site_helpers import REPO, copy_project, mkdocs_build

# The macro interface check: a page template kept with the tests, built as a page of a copy of the site.
MACRO_PAGE = Path(__file__).resolve().parent / "macro_page.md"
MACRO_PAGE_NAME = "macro_interface"


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The repository's own site, built exactly as `mkdocs build --strict` builds it."""
    out = tmp_path_factory.mktemp("site")
    mkdocs_build(REPO, out)
    return out


@pytest.fixture(scope="session")
def macro_site(tmp_path_factory) -> Path:
    """A copy of the site with the macro interface page added next to the LLM page."""
    project = copy_project(tmp_path_factory.mktemp("macro_project") / "project")
    shutil.copy(MACRO_PAGE, project / "docs" / "configuration" / f"{MACRO_PAGE_NAME}.md")
    out = tmp_path_factory.mktemp("macro_site")
    mkdocs_build(project, out)
    return out


