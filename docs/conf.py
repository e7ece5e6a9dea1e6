"""Sphinx configuration: the Markdown pages of docs/ and an API reference from the numpydoc docstrings.

Build with ``make docs`` (warnings are errors); the HTML goes to docs/_build/html.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "parsl_wq"
author = "the parsl_wq developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
html_static_path = []
