"""The error tree: every error class of mailscan is defined in tasks/errors.py, and its
docstring draws each of them."""

from __future__ import annotations

import ast
import inspect
import re

from tasks import errors
from tests.test_boundaries import modules

TREE = {
    name: cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__
}


def _looks_like_an_error(base: ast.expr) -> bool:
    name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
    return name in TREE or name.endswith(("Error", "Exception")) or name == "LookupError"


def test_no_error_class_is_defined_outside_the_tree():
    found = sorted(
        f"{module}.{node.name}"
        for module, path in modules().items()
        if module != errors.__name__
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and any(map(_looks_like_an_error, node.bases))
    )
    assert found == []


def test_the_docstring_draws_every_class_under_its_parent():
    drawing = errors.__doc__ or ""
    drawn = {m["name"]: m.start() for m in re.finditer(r"(?:── |^ +)(?P<name>\w+)", drawing, re.M)}
    assert set(drawn) == set(TREE)
    for name, cls in TREE.items():
        parent = cls.__mro__[1].__name__
        if parent in TREE:
            assert drawn[parent] < drawn[name], f"{name} is drawn above {parent}"
