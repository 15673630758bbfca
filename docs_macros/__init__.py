"""mkdocs-macros module of the documentation site (`module_name: docs_macros` in mkdocs.yml).

Pages call the section getters and `schema_class_to_fields` from `schema_docs`, and the Jinja macros
in `docs/configuration/macros/includes.md` turn their results into YAML blocks and field lists.
"""

from __future__ import annotations

import os
from typing import List

from jinja2 import FileSystemLoader

from docs_macros import cli_docs, schema_docs


def define_env(env) -> None:
    for getter in schema_docs.SECTION_GETTERS:
        env.macro(getter)
    env.macro(schema_docs.schema_class_to_fields)
    env.macro(schema_docs.config_yaml)
    env.macro(schema_docs.changed_defaults)
    env.macro(cli_docs.cli_reference)
    env.macro(cli_docs.cli_global_options)
    env.filter(schema_docs.yaml_inline)

    @env.macro
    def example_file(path: str) -> str:
        """The text of a file of the repository (an example config), so a page shows the file itself."""
        with open(os.path.join(env.project_dir, path), encoding="utf-8") as f:
            return f.read()


def on_pre_page_macros(env) -> None:
    """Resolve `{% from './macros/includes.md' import ... %}` relative to the page being rendered.

    Jinja's FileSystemLoader ignores `./` and looks in one fixed directory (docs_dir by default), so
    `./macros/includes.md` from `configuration/large_language_model.md` would miss
    `configuration/macros/includes.md`. Searching the page's directory, then its parents up to
    docs_dir, makes the relative import work from any page at any depth. A fresh loader per page
    also keeps Jinja's template cache (keyed by loader and name) from serving one directory's
    `./macros/...` to a page in another. Jinja refuses `../`; from elsewhere, import by the path
    from docs_dir (`configuration/macros/includes.md`).
    """
    env.env.loader = FileSystemLoader(_search_path(env.conf["docs_dir"], env.page.file.src_path))


def _search_path(docs_dir: str, page_src_path: str) -> List[str]:
    directory = os.path.dirname(page_src_path)
    paths = []
    while True:
        paths.append(os.path.join(docs_dir, directory))
        if not directory:
            return paths
        directory = os.path.dirname(directory)
