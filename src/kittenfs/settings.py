"""Reading a config: its flags, ``KITTENFS_*`` variables and file keys, made from its fields.

``add_flags(parser, cls)`` gives a sub-command one flag per setting of the config class
``cls`` (config.py), nested ones included, with the default and the variable in its help;
``resolve(cls, args, environ)`` builds the config from the flags given, then the environment,
then the config file's table of the process (``[master]``), then the defaults, and raises
ConfigError with one line that names the flag, variable or file key of a bad value and what
is allowed.  ``reference()`` is the table of every setting in docs/configuration.md.
"""

import argparse
import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar

from .config import (
    ENV_PREFIX,
    ClientConfig,
    ConfigError,
    GatewayConfig,
    JobOptions,
    MasterConfig,
    RebuildConfig,
    Setting,
    UpConfig,
    WorkerConfig,
)

C = TypeVar("C")

#: The flag and the variable that name a config file.
CONFIG_FLAG = "--config"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?))?b?", re.IGNORECASE)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Option:
    """One setting of a config class as the outside sees it."""

    #: Field names from the config class down, e.g. ("limits", "uploads").
    path: tuple[str, ...]
    rule: Setting
    #: The value's type: int, float, str, bool, Path, or another one that ``rule.parse`` makes.
    type: type
    #: The default, or MISSING for a required setting.
    default: Any

    @property
    def flag(self) -> str:
        """``--foo-bar`` for field ``foo_bar``, unless the setting names another."""
        return self.rule.flag or "--" + self.path[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        """The flag's attribute in parsed arguments."""
        return self.flag[2:].replace("-", "_")

    @property
    def key(self) -> str:
        """The setting's key in a config file."""
        return self.flag[2:]

    @property
    def env(self) -> tuple[str, ...]:
        """The variables that may set it, the first found wins."""
        if not self.rule.env:
            return ()
        own = ENV_PREFIX + self.dest.upper()
        return (own, *(name for name, _ in self.rule.extra_env))

    def parse(self, text: str, env: str | None = None) -> Any:
        """Return the value ``text`` stands for (from variable ``env``, if given); raise
        ValueError saying what is allowed."""
        parse = dict(self.rule.extra_env).get(env or "", self.rule.parse)
        if parse is not None:
            value = parse(text)
        elif self.type is bool:
            value = _parse_bool(text)
        elif self.rule.kind == "bytes":
            value = _parse_bytes(text)
        elif self.type is int:
            value = _parse_number(text, int, "an integer")
        elif self.type is float:
            value = _parse_number(text, float, "a number")
        else:
            value = self.type(text)
        return value * self.rule.scale if self.rule.scale != 1 else value

    def check(self, value: Any) -> str | None:
        """Return what is allowed if ``value`` is not, else None."""
        if value is None:
            return None
        if self.rule.choices and value not in self.rule.choices:
            return f"must be one of {', '.join(self.rule.choices)}"
        if self.rule.check is not None and not self.rule.check.test(value):
            return f"must be {self.rule.check.allowed}"
        return None

    def shown_default(self) -> str:
        """The default as the help and the docs show it."""
        if self.default is MISSING:
            return "required"
        if self.rule.shown is not None and self.default is None:
            return self.rule.shown
        return show(self.default, self)


def show(value: Any, option: Option) -> str:
    """Return ``value`` in the flag's terms: 64 MiB, 4 (MB/s), on."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if option.rule.kind == "bytes":
        return _show_bytes(value)
    if isinstance(value, float):
        return f"{value / option.rule.scale:g}"
    return str(value)


def _show_bytes(value: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value and value % size == 0:
            return f"{value // size} {unit}"
    return str(value)


def _parse_bool(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError("must be true or false (1/0, yes/no, on/off)")


def _parse_number(text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"must be {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be {what}")
    return value


def _parse_bytes(text: str) -> int:
    """Return the bytes ``text`` names: 65536, 64KiB (powers of 1024), 1.5GB (of 1000)."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise ValueError("must be a size in bytes, such as 65536, 64KiB or 5GiB")
    number, unit, binary = match.groups()
    power = "kmgt".index(unit.lower()) + 1 if unit else 0
    return int(float(number) * (1024 if binary else 1000) ** power)


@functools.cache
def options(cls: type) -> tuple[Option, ...]:
    """Return every setting of config class ``cls``, those of its nested configs in place."""
    return tuple(_options(cls, (), None))


def _options(cls: type, prefix: tuple[str, ...], defaults: Any) -> Iterator[Option]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if defaults is None else getattr(defaults, f.name)
        rule = f.metadata.get("setting")
        if rule is None:
            if not dataclasses.is_dataclass(hints[f.name]):
                raise TypeError(f"{cls.__name__}.{f.name} is neither a setting nor a config")
            yield from _options(hints[f.name], (*prefix, f.name), default)
            continue
        yield Option((*prefix, f.name), rule, _base_type(hints[f.name]), default)


def _base_type(hint: Any) -> type:
    """int for ``int | None``: the type a value has when there is one."""
    if isinstance(hint, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint  # type: ignore[no-any-return]


def add_flags(
    parser: argparse.ArgumentParser, cls: type, file: bool = False, only: tuple[str, ...] = ()
) -> None:
    """Add a flag for every setting of ``cls`` (or those of the fields in ``only``), and
    ``--config FILE`` with ``file``; each is absent from the parsed arguments unless given,
    so that ``resolve`` can tell."""
    for option in options(cls):
        if not only or option.path[-1] in only:
            _add_flag(parser, option)
    if file:
        parser.add_argument(
            CONFIG_FLAG,
            metavar="FILE",
            default=argparse.SUPPRESS,
            help=f"read settings from this TOML file (its [{section_of(cls)}] table; "
            f"flags and environment win) (env {CONFIG_ENV})",
        )


def _add_flag(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = option.rule.help
    tail = "required" if option.default is MISSING else f"default {option.shown_default()}"
    if option.env:
        tail += f"; env {' or '.join(option.env)}"
    help_text = f"{help_text} ({tail})".replace("%", "%%")
    if option.type is bool:
        parser.add_argument(
            option.flag,
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=help_text,
        )
        return
    parser.add_argument(
        option.flag,
        dest=option.dest,
        metavar=_metavar(option),
        default=argparse.SUPPRESS,
        help=help_text,
    )


def _metavar(option: Option) -> str:
    if option.rule.metavar:
        return option.rule.metavar
    if option.rule.choices:
        return "|".join(option.rule.choices)
    if option.rule.kind == "bytes":
        return "BYTES"
    if option.type is Path:
        return "PATH"
    return "N" if option.type is int else option.dest.upper()


#: The processes a config file configures; ``up``, ``rebuild`` and the jobs take flags only.
FILE_SECTIONS = frozenset({"master", "worker", "client"})


def section_of(cls: type) -> str:
    """The table of ``cls``'s settings in a config file: [master], [worker], [client]."""
    return cls.__name__.removesuffix("Config").lower()


def resolve(
    cls: type[C],
    args: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Return the config of class ``cls`` that the flags in ``args``, the environment and the
    config file ask for (in that order of precedence), the defaults filling the rest."""
    environ = os.environ if environ is None else environ
    file = _read_file(args, environ, cls)
    values: dict[tuple[str, ...], Any] = {}
    for option in options(typing.cast(type, cls)):
        found = _value_of(option, args, environ, file)
        if found is not MISSING:
            values[option.path] = found
        elif option.default is MISSING:
            where = f" (or {option.env[0]})" if option.env else ""
            raise ConfigError(f"{option.flag} is required{where}")
    return _build(cls, values, ())  # type: ignore[no-any-return]


def _value_of(
    option: Option, args: argparse.Namespace, environ: Mapping[str, str], file: dict[str, Any]
) -> Any:
    """Return the value of ``option`` from the first source that gives it, or MISSING."""
    given = getattr(args, option.dest, MISSING)
    if given is not MISSING:
        shown = "..." if option.rule.secret else given
        return _checked(option, given, f"{option.flag} {shown}".rstrip(), None)
    for name in option.env:
        if environ.get(name):
            hidden = option.rule.secret or name != option.env[0]  # the cluster secret itself
            shown = "" if hidden else f"={environ[name]}"
            return _checked(option, environ[name], f"{name}{shown}", name)
    if option.key in file:
        text, label = file[option.key]
        return _checked(option, text, label, None)
    return MISSING


def _checked(option: Option, given: Any, label: str, env: str | None) -> Any:
    try:
        value = given if isinstance(given, bool) else option.parse(given, env)
    except ValueError as exc:
        raise ConfigError(f"{label}: {exc}") from None
    problem = option.check(value)
    if problem is not None:
        raise ConfigError(f"{label}: {problem}")
    return value


def _build(
    cls: type, values: dict[tuple[str, ...], Any], prefix: tuple[str, ...], base: Any = None
) -> Any:
    """Construct ``cls`` from ``values`` (by path), nested configs from their defaults."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        if path in values:
            kwargs[f.name] = values[path]
        elif "setting" not in f.metadata and any(p[: len(path)] == path for p in values):
            default = f.default if base is None else getattr(base, f.name)
            kwargs[f.name] = _build(hints[f.name], values, path, default)
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _read_file(
    args: argparse.Namespace, environ: Mapping[str, str], cls: type
) -> dict[str, tuple[str, str]]:
    """Return the settings of ``cls``'s table in the config file, if one is named, as
    key -> (text, label for errors)."""
    path = getattr(args, "config", None) or environ.get(CONFIG_ENV)
    if not path or section_of(cls) not in FILE_SECTIONS:
        return {}
    import tomllib

    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{CONFIG_FLAG} {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FLAG} {path}: not valid TOML: {exc}") from None
    section = section_of(cls)
    table = document.get(section, {})
    known = {option.key for option in options(cls)}
    found: dict[str, tuple[str, str]] = {}
    for key, value in table.items():
        label = f"{path} [{section}] {key}"
        if key not in known:
            raise ConfigError(f"{label}: no such setting (see kittenfs {section} --help)")
        if isinstance(value, dict | list):
            raise ConfigError(f"{label}: must be a single value")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        found[key] = (text, f"{label} = {value!r}")
    return found


#: The config classes, in the order docs/configuration.md lists them: (command, class).
DOCUMENTED = (
    ("kittenfs master", MasterConfig),
    ("kittenfs worker", WorkerConfig),
    ("kittenfs s3 (the S3 gateway)", GatewayConfig),
    ("client commands (put, get, ls, ...)", ClientConfig),
    ("kittenfs up", UpConfig),
    ("kittenfs rebuild", RebuildConfig),
    ("jobs (rebalance, repair, drain, gc)", JobOptions),
)


def reference() -> str:
    """Return the Markdown tables of every setting: flag, variable, default, meaning."""
    parts = []
    for title, cls in DOCUMENTED:
        rows = [
            f"### {title}",
            "",
            "| flag | environment | default | meaning |",
            "|---|---|---|---|",
        ]
        for option in options(cls):
            env = "<br>".join(f"`{name}`" for name in option.env) or "-"
            rows.append(
                f"| `{option.flag}` | {env} | {option.shown_default()} | {option.rule.help} |"
            )
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"


#: The lines between which docs/configuration.md holds ``reference()``.
GENERATED = (
    "<!-- generated by `python -m kittenfs.settings docs/configuration.md`: begin -->",
    "<!-- generated: end -->",
)


def write_reference(path: Path) -> None:
    """Put ``reference()`` between the GENERATED lines of the Markdown file ``path``."""
    begin, end = GENERATED
    head, rest = path.read_text().split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n\n{reference()}\n{end}{tail}")


if __name__ == "__main__":
    import sys

    write_reference(Path(sys.argv[1]))
