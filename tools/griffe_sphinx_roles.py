"""Griffe extension for the API reference (``mkdocs.yml``): Sphinx roles in docstrings as code.

The docstrings cross-reference with Sphinx roles (``:class:`~catlog.estimator.Estimator```),
which Markdown would show verbatim; this renders each as inline code of the name it shows
in Sphinx (the last component after ``~``, else the whole path).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([\w.]+)`")


def _as_code(match: re.Match[str]) -> str:
    short, path = match.groups()
    return f"`{path.rsplit('.', 1)[-1] if short else path}`"


class SphinxRolesAsCode(griffe.Extension):
    """Rewrites every docstring's Sphinx roles as inline code when griffe loads an object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)
