"""Options from one place, and one way to run a command and report its errors.

:func:`dataclass_options` turns a dataclass's fields into click options (``label_horizon`` ->
``--label-horizon``, typed from the annotation, default from the dataclass, help from its
docstring's ``Attributes:`` section), so a setting is declared once, in the dataclass it
configures; :func:`config_from` builds the dataclass back from the parsed values.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)
"""Type of an input-file option: a missing file is a one-line error naming it, exit code 2."""
folder = click.Path(file_okay=False, path_type=Path)
"""Type of an output-folder option (created when needed)."""


class IntList(click.ParamType):
    """Comma-separated integers, e.g. ``64,32``."""

    name = "INT,INT..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, tuple | list):
            return tuple(int(v) for v in value)
        try:
            return tuple(int(v) for v in re.split(r"[,\s]+", str(value).strip()) if v)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)


def field_help(cls: type) -> dict[str, str]:
    """``{field: text}`` from the Google-style ``Attributes:`` section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    helps: dict[str, list[str]] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            current = match.group(1)
            helps[current] = [match.group(2)]
        elif current and line.startswith("        "):
            helps[current].append(line.strip())
        elif line.strip():
            break
    return {name: re.sub(r"``([^`]*)``", r"\1", " ".join(words)) for name, words in helps.items()}


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """The click type of a field annotation, and whether ``None`` is allowed."""
    args = typing.get_args(annotation)
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and (
        type(None) in args
    )
    if optional:
        (annotation,) = [a for a in args if a is not type(None)]
    if typing.get_origin(annotation) is tuple:
        return IntList(), optional
    if annotation in (int, float, str, bool):
        return annotation, optional
    raise TypeError(f"no click type for {annotation!r}")


def dataclass_options(
    cls: type,
    *,
    only: Iterable[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Callable[[F], F]:
    """Decorator adding one ``--field-name`` option per field of dataclass ``cls``.

    Args:
        cls: the dataclass the options configure.
        only: these fields only (default: every field), in the dataclass's order.
        defaults: defaults that differ from the dataclass's own for this command.
    """
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    wanted = set(only) if only is not None else None
    instance_defaults = {**_defaults(cls), **(defaults or {})}

    def decorate(function: F) -> F:
        for item in reversed(dataclasses.fields(cls)):
            if wanted is not None and item.name not in wanted:
                continue
            kind, _ = _click_type(hints[item.name])
            default = instance_defaults.get(item.name)
            flag = "--" + item.name.replace("_", "-")
            declared = f"{flag}/--no-{flag[2:]}" if kind is bool else flag
            function = click.option(
                declared,
                type=None if kind is bool else kind,
                default=default,
                show_default=default is not None,
                help=helps.get(item.name),
            )(function)
        return function

    return decorate


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            out[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            out[item.name] = item.default_factory()
    return out


def config_from(cls: type[T], values: Mapping[str, Any], **overrides: Any) -> T:
    """``cls(**fields)`` from parsed option values (keys that are not fields are ignored).

    Raises:
        ValueError: the dataclass refuses the values (its own checks).
    """
    names = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    chosen = {k: v for k, v in values.items() if k in names}
    return cls(**{**chosen, **overrides})


def run(command: click.Command, argv: Sequence[str] | None = None, *, prog_name: str) -> int:
    """Run ``command`` on ``argv``; its exit code (the command's return value, 0 for ``--help``).

    A usage error (unknown option, bad value, missing input file) prints one line,
    ``error: ...``, and exits with code 2, as argparse does.
    """
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        raise SystemExit(2) from None
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(1) from None
    return int(result or 0)
