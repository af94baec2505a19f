"""Typed, validated run configuration: defaults <- TOML file <- command-line flags.

A schema is a list of :class:`Opt` (section, key, default, type, help).  From it we

* load a TOML file (``configs/train.toml`` / ``configs/pretrain.toml``), rejecting unknown
  sections or keys and values of the wrong type with a message naming the key and the file;
* generate one ``argparse`` flag per key (``--batch-size``, ``--lr``, ...) whose help text
  gives the key, its meaning and its default, so ``--help`` documents every option;
* merge: schema default, then the file, then the flags the user actually typed.

The result is a plain nested dict (``cfg["optim"]["lr"]``), stored verbatim in every
checkpoint so a run can be reproduced and resumed.
"""
from __future__ import annotations

import argparse
import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

__all__ = ["Opt", "ConfigError", "load_config", "add_config_args", "config_from_args", "parse_cli", "defaults", "to_toml"]


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and what is expected."""


@dataclass(frozen=True)
class Opt:
    section: str
    key: str
    default: Any
    kind: str  # "int" "float" "str" "bool" "ints" "floats" "strs"
    help: str
    flag: str | None = None  # CLI flag (default: --key with dashes)
    choices: tuple | None = None
    check: Callable[[Any], bool] | None = None  # extra validation
    check_msg: str = ""
    metavar: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def cli(self) -> str:
        return self.flag or "--" + self.key.replace("_", "-")


def _coerce(opt: Opt, value: Any, where: str) -> Any:
    def bad(expect: str):
        return ConfigError(f"{where}: {opt.name} must be {expect}, got {value!r}")

    k = opt.kind
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif k == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif k == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif k in ("ints", "floats", "strs"):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        inner = {"ints": "int", "floats": "float", "strs": "str"}[k]
        sub = Opt(opt.section, opt.key, None, inner, "")
        value = [_coerce(sub, v, where) for v in value]
    else:  # pragma: no cover - schema error
        raise AssertionError(k)
    if opt.choices is not None and value not in opt.choices:
        raise ConfigError(f"{where}: {opt.name} must be one of {list(opt.choices)}, got {value!r}")
    if opt.check is not None and not opt.check(value):
        raise ConfigError(f"{where}: {opt.name} {opt.check_msg}, got {value!r}")
    return value


def defaults(schema: list[Opt]) -> dict:
    out: dict = {}
    for o in schema:
        out.setdefault(o.section, {})[o.key] = copy.deepcopy(o.default)
    return out


def load_config(schema: list[Opt], path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the TOML file at ``path`` (optional), then ``overrides`` {section: {key: v}}."""
    cfg = defaults(schema)
    index = {(o.section, o.key): o for o in schema}
    sections = sorted({o.section for o in schema})
    layers = []
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        layers.append((str(path), data))
    if overrides:
        layers.append(("command line", overrides))
    for where, data in layers:
        for sec, body in data.items():
            if sec not in sections:
                raise ConfigError(f"{where}: unknown section [{sec}] (known: {', '.join(sections)})")
            if not isinstance(body, dict):
                raise ConfigError(f"{where}: [{sec}] must be a table of keys")
            for key, value in body.items():
                opt = index.get((sec, key))
                if opt is None:
                    known = ", ".join(o.key for o in schema if o.section == sec)
                    raise ConfigError(f"{where}: unknown key {sec}.{key} (known in [{sec}]: {known})")
                cfg[sec][key] = _coerce(opt, value, where)
    return cfg


_ARG_TYPES = {"int": int, "float": float, "str": str, "ints": int, "floats": float, "strs": str}


def add_config_args(parser: argparse.ArgumentParser, schema: list[Opt], config_default: str | None) -> None:
    """``--config FILE`` plus one flag per schema key, grouped by section."""
    parser.add_argument("--config", metavar="FILE", default=config_default,
                        help=f"TOML config file; flags below override its values (default: {config_default})")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for o in schema:
        g = groups.get(o.section)
        if g is None:
            g = groups[o.section] = parser.add_argument_group(f"[{o.section}] (config file section)")
        dflt = o.default if not isinstance(o.default, str) or o.default else '""'
        ch = f" (one of: {', '.join(map(str, o.choices))})" if o.choices else ""
        text = f"{o.help}{ch} [{o.name}; default: {dflt}]".replace("%", "%%")
        kw: dict = dict(dest=f"cfg__{o.section}__{o.key}", default=argparse.SUPPRESS, help=text)
        if o.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = _ARG_TYPES[o.kind]
            if o.kind in ("ints", "floats", "strs"):
                kw["nargs"] = "*"
            if o.choices is not None and o.kind != "strs":
                kw["choices"] = o.choices
            kw["metavar"] = o.metavar or o.key.upper()
        g.add_argument(o.cli, **kw)


def config_from_args(schema: list[Opt], args: argparse.Namespace) -> dict:
    over: dict = {}
    for k, v in vars(args).items():
        if k.startswith("cfg__"):
            _, sec, key = k.split("__", 2)
            over.setdefault(sec, {})[key] = v
    return load_config(schema, getattr(args, "config", None), over)


def parse_cli(ap: argparse.ArgumentParser, schema: list[Opt], argv=None) -> dict | None:
    """Parse flags into a resolved config; prints it and returns None for --print-config."""
    ap.add_argument("--print-config", action="store_true", help="print the resolved config as TOML and exit")
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(schema, args)
    except ConfigError as exc:
        ap.error(str(exc))
    if args.print_config:
        print(to_toml(cfg))
        return None
    return cfg


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def to_toml(cfg: dict) -> str:
    """A resolved config as TOML (written next to checkpoints as config.toml)."""
    lines = []
    for sec, body in cfg.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)
