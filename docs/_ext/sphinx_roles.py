"""A griffe extension for the API reference: Sphinx-style markup becomes Markdown.

The library's docstrings name other objects the Sphinx way (``:class:`Session```,
``:meth:`aclose```). mkdocstrings renders Markdown, where those would show as raw text,
so this turns each into an optional autorefs link: a link where the target is rendered on
the site, plain code where it is not (an optional reference never fails a strict build).
A reST literal block's ``::`` becomes ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_PACKAGE = "durable_streams"
# A reST literal block ("...::" then an indented block) is already a Markdown code block
# once its "::" becomes ":".
_LITERAL = re.compile(r"(?<=\S)::(?=\n\n)")
_ROLE = re.compile(r":(?:class|meth|attr|func|exc|data|mod|obj):`~?(?P<target>[\w.]+?)(?:\(\))?`")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings once the whole package is loaded."""
        if pkg.name != _PACKAGE:
            return
        for obj in _objects(pkg):
            docstring = obj.docstring
            if docstring is not None and ":" in docstring.value:
                docstring.value = _rewrite(pkg, obj, docstring.value)


def _rewrite(pkg: griffe.Module, obj: griffe.Object, text: str) -> str:
    """``text`` with every role replaced by a cross-reference seen from ``obj``."""

    def replace(match: re.Match[str]) -> str:
        return _link(pkg, obj, match["target"])

    return _ROLE.sub(replace, _LITERAL.sub(":", text))


def _objects(obj: griffe.Object) -> list[griffe.Object]:
    """The object and every object defined under it (aliases are skipped: their targets count)."""
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_objects(member))
    return found


def _link(pkg: griffe.Module, obj: griffe.Object, target: str) -> str:
    """An autorefs element for ``target`` as seen from ``obj``."""
    for identifier in _candidates(pkg, obj, target):
        if _exists(pkg, identifier):
            return f'<autoref identifier="{identifier}" optional><code>{target}</code></autoref>'
    return f"<code>{target}</code>"


def _candidates(pkg: griffe.Module, obj: griffe.Object, target: str) -> list[str]:
    """Public paths ``target`` may mean: a member of the enclosing class, or a package name."""
    found = []
    cls = obj if obj.is_class else obj.parent
    if cls is not None and cls.is_class and cls.name in pkg.members:
        found.append(f"{_PACKAGE}.{cls.name}.{target}")
    found.append(f"{_PACKAGE}.{target}")
    return found


def _exists(pkg: griffe.Module, identifier: str) -> bool:
    try:
        pkg[identifier.removeprefix(f"{_PACKAGE}.")]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False
    return True
