"""Command-line options from dataclass fields, so that a setting is declared once: its name,
type, default and help live on the field, and :func:`add_options` turns the fields into
argparse options (booleans as ``--x/--no-x``) that :func:`values` reads back.

A field's ``metadata`` (or an ``overrides`` entry for a dataclass that is not ours) may hold:

* ``help`` (required for every option);
* ``flag`` (the option's name; default ``--field-name``), ``choices``, ``nargs``, ``metavar``;
* ``default``: the command line's default where it differs from the dataclass's;
* ``deprecated``: old names of a switch and the value each sets, e.g. ``{"--use-gp": True}``;
  they still work, with a one-line warning on stderr;
* ``cli: False``: no option (the value is computed from other settings).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import sys
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MISSING = dataclasses.MISSING
_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "None": None}


@dataclass(frozen=True)
class Option:
    """One command-line option: a dataclass field and how the command line shows it."""

    name: str
    type: type  # the value's type, or a list's element type
    default: Any  # MISSING: the option is required
    help: str
    flag: str
    is_list: bool = False
    choices: Sequence | None = None
    nargs: str | None = None
    metavar: str | None = None
    deprecated: dict[str, Any] = dataclasses.field(default_factory=dict)


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its help text (and other option metadata); lists get a factory."""
    meta = {"help": help, **cli}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def options_of(cls: type, overrides: dict[str, dict] | None = None) -> list[Option]:
    """The options of dataclass ``cls``, from its fields and their metadata (plus ``overrides``)."""
    out = []
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata) | (overrides or {}).get(f.name, {})
        if meta.get("cli", True):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            out.append(_option(f"{cls.__name__}.{f.name}", f.name, f.type, default, meta))
    return out


def source_options(module: str, class_name: str, overrides: dict[str, dict]) -> list[Option]:
    """The options of a dataclass read from its module's source, without importing the module.

    For ``encoder.model.rtf.ModelConfig``: importing it imports PyTorch (about 2 s), which
    ``--help`` should not wait for. Every field must have an ``overrides`` entry (its help, or
    ``cli: False``), so a field added to the dataclass cannot go without an option unnoticed.
    """
    origin = importlib.util.find_spec(module).origin
    tree = ast.parse(Path(origin).read_text(), origin)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    out, seen = [], set()
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        seen.add(name)
        if name not in overrides:
            raise TypeError(f"{class_name}.{name}: declare its help text (or cli: False) in the overrides")
        if not overrides[name].get("cli", True):
            continue
        try:
            default = MISSING if node.value is None else ast.literal_eval(node.value)
        except ValueError:
            raise TypeError(f"{class_name}.{name}: an option needs a literal default in the source") from None
        out.append(_option(f"{class_name}.{name}", name, ast.unparse(node.annotation), default, overrides[name]))
    if stale := set(overrides) - seen:
        raise TypeError(f"{class_name} has no fields {sorted(stale)} (overrides out of date)")
    return out


def _option(where: str, name: str, annotation: str | type, default: Any, meta: dict) -> Option:
    if not meta.get("help"):
        raise TypeError(f"{where}: every option needs help text")
    typ, is_list = _resolve(annotation)
    default = meta.get("default", default)
    nargs = meta.get("nargs") or ("+" if is_list else None)
    if nargs and default is not MISSING and default is not None and not isinstance(default, list):
        default = [default]  # a scalar field that the command line accepts several values for
    return Option(
        name,
        typ,
        default,
        meta["help"],
        meta.get("flag", "--" + name.replace("_", "-")),
        is_list,
        meta.get("choices"),
        nargs,
        meta.get("metavar"),
        meta.get("deprecated", {}),
    )


def _resolve(annotation: str | type) -> tuple[type, bool]:
    """(value type, is a list) of an annotation such as ``int``, ``str | None``, ``list[str] | None``."""
    hint = eval(annotation, {"__builtins__": {}}, _TYPES) if isinstance(annotation, str) else annotation
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


# ---------------------------------------------------------------------------- argparse
class _DeprecatedSwitch(argparse.Action):
    """An old name of a switch: sets its value, and says on stderr which name replaces it."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str = "", **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)
        self.replacement = replacement

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: {option_string} is deprecated, use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, self.const)


def _show(default: Any) -> str:
    return " ".join(map(str, default)) if isinstance(default, list) else str(default)


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: Iterable[Option], prefix: str = ""
) -> None:
    """Add each option to ``parser``; values land in the namespace as ``prefix + name``."""
    for o in options:
        dest, text, switch = prefix + o.name, o.help, o.type is bool and not o.is_list
        if switch and o.default is True:
            text += " (on by default)"
        elif not switch and o.default is not MISSING and o.default is not None:
            text += f" (default: {_show(o.default)})"
        if o.deprecated:
            text += f"; formerly {', '.join(o.deprecated)}"
        text = text.replace("%", "%%")
        if switch:
            action = parser.add_argument(
                o.flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=o.default,
                required=o.default is MISSING,
            )
            action.help = text  # BooleanOptionalAction appends its default itself on some Pythons
        else:
            metavar = o.metavar or (None if o.choices else o.flag[2:].upper().replace("-", "_"))
            parser.add_argument(
                o.flag,
                dest=dest,
                type=o.type,
                default=None if o.default is MISSING else o.default,
                required=o.default is MISSING,
                choices=o.choices,
                nargs=o.nargs,
                metavar=metavar,
                help=text,
            )
        for old, value in o.deprecated.items():
            new = o.flag if value is True else "--no-" + o.flag[2:]
            parser.add_argument(old, dest=dest, action=_DeprecatedSwitch, const=value, replacement=new)


def values(namespace: argparse.Namespace, options: Iterable[Option], prefix: str = "") -> dict[str, Any]:
    """The parsed values of ``options``, by field name."""
    return {o.name: getattr(namespace, prefix + o.name) for o in options}


def to_argv(settings: dict[str, Any], options: Iterable[Option]) -> list[str]:
    """The command line that sets ``settings`` (option names without ``--`` → values), in their order;
    a switch set to false becomes ``--no-x``."""
    by_name = {o.flag[2:]: o for o in options}
    argv: list[str] = []
    for name, value in settings.items():
        if name not in by_name:
            raise KeyError(f"{name}: no such option (known: {', '.join(sorted(by_name))})")
        o = by_name[name]
        if o.type is bool and not o.is_list:
            argv.append(o.flag if value else "--no-" + o.flag[2:])
        elif isinstance(value, list):
            argv += [o.flag, *map(str, value)]
        else:
            argv += [o.flag, str(value)]
    return argv
