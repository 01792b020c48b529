"""Typed YAML: every key of a model or profile YAML declares its type in its comment.

A line ``key: value   # int: what it means`` declares ``key`` an ``int``.  The type is the
comment's text before its first colon (or all of it), a ``|``-union of

``int``, ``float``, ``str``, ``bool``, ``null``, ``list``, ``list[T]``, ``dict``,
``dict[K, V]`` (values of type ``V``) and bare words, which are literal strings
(``list[str] | all``).  Inside brackets an unknown word (``dict[model, dict]``) means any.

``check(data, schema, path)`` validates a loaded mapping against the declared types before
anything runs on it, so a wrong value is one line naming the file and key
(``ConfigError``), never a traceback deep in training.  The one conversion: a string that
reads as a number where a ``float`` is declared becomes that float, because YAML 1.1
(PyYAML) reads ``1e-3`` (no dot) as a string.  Nothing else is changed, so the config
hashes of existing records stay as they are.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from bench.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
ATOMS = ("int", "float", "str", "bool", "null", "list", "dict", "any")
_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w@.\-]*)\s*:(?P<value>[^#]*?)\s*#\s*(?P<comment>.*)$")
_BARE_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w@.\-]*)\s*:")
_TYPE_TEXT = re.compile(r"^[\w\[\], |@]+$")


# =========================================================================== type expressions
def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def parse_type(text: str, nested: bool = False):
    """A type expression as a tuple tree: ('union', [alts]), ('atom', name), ('list', T),
    ('dict', V), ('literal', word); None when ``text`` is not a type (a plain comment)."""
    text = text.strip()
    if not text or not _TYPE_TEXT.match(text) or text.count("[") != text.count("]"):
        return None
    alts = []
    for alt in _split_top(text, "|"):
        alt = alt.strip()
        head, _, inner = alt.partition("[")
        head = head.strip()
        if inner:
            args = [a.strip() for a in _split_top(inner[:-1], ",")]
            if head == "list" and len(args) == 1:
                alts.append(("list", parse_type(args[0], True) or ("atom", "any")))
            elif head == "dict" and len(args) == 2:
                alts.append(("dict", parse_type(args[1], True) or ("atom", "any")))
            else:
                alts.append(("atom", "any"))
        elif head in ATOMS:
            alts.append(("atom", head))
        elif re.fullmatch(r"[\w@\-]+", head):
            alts.append(("atom", "any") if nested else ("literal", head))
        else:
            return None
    if not nested and not any(kind != "literal" for kind, _ in alts):
        return None  # "# paper: 0.2" is a note, not a type
    return alts[0] if len(alts) == 1 else ("union", alts)


def describe(tree) -> str:
    kind, arg = tree
    if kind == "union":
        return " | ".join(describe(a) for a in arg)
    if kind == "list":
        return f"list[{describe(arg)}]"
    if kind == "dict":
        return f"dict[..., {describe(arg)}]"
    return arg if kind == "atom" else repr(arg)


def _as_float(value):
    """``value`` as a float where it reads as a number (YAML 1.1's '1e-3'), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def conform(value, tree):
    """(ok, value): ``value`` checked against ``tree``; a numeric string becomes a float."""
    kind, arg = tree
    if kind == "union":
        for alt in arg:
            ok, out = conform(value, alt)
            if ok:
                return True, out
        return False, value
    if kind == "literal":
        return value == arg, value
    if kind == "list":
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, item = conform(item, arg)
            if not ok:
                return False, value
            out.append(item)
        return True, out
    if kind == "dict":
        if not isinstance(value, dict):
            return False, value
        out = {}
        for k, item in value.items():
            ok, item = conform(item, arg)
            if not ok:
                return False, value
            out[k] = item
        return True, out
    if arg == "any":
        return True, value
    if arg == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if arg == "float":
        number = _as_float(value)
        return number is not None, value if number is None or isinstance(value, (int, float)) else number
    if arg == "str":
        return isinstance(value, str), value
    if arg == "bool":
        return isinstance(value, bool), value
    if arg == "null":
        return value is None, value
    if arg == "list":
        return isinstance(value, list), value
    if arg == "dict":
        return isinstance(value, dict), value
    return True, value


# =========================================================================== declarations
@lru_cache(maxsize=64)
def _declared_cached(path: str, mtime: float) -> dict:
    types, stack = {}, []  # stack: (indent, key) of the open block mappings
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "-")):
            continue
        bare = _BARE_KEY.match(line)
        if not bare:
            continue
        indent = len(bare["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keys = tuple(k for _, k in stack) + (bare["key"],)
        typed = _KEY_LINE.match(line)
        if typed:
            tree = parse_type(typed["comment"].split(":", 1)[0])
            if tree is not None:
                types[keys] = tree
        rest = line[bare.end():].split("#", 1)[0].strip()
        if not rest:
            stack.append((indent, bare["key"]))
    return types


def declared(path) -> dict:
    """{key path tuple: type tree} of the typed comments of a YAML file."""
    path = Path(path)
    return dict(_declared_cached(str(path), path.stat().st_mtime))


def _union(a, b):
    if a == b:
        return a
    alts = list(a[1] if a[0] == "union" else [a])
    alts += [x for x in (b[1] if b[0] == "union" else [b]) if x not in alts]
    return alts[0] if len(alts) == 1 else ("union", alts)


def _merged(paths, depth_filter) -> dict:
    out = {}
    for path in paths:
        for keys, tree in declared(path).items():
            key = depth_filter(keys)
            if key is not None:
                out[key] = _union(out[key], tree) if key in out else tree
    return out


def profile_schema(path=None) -> dict:
    """Types of a profile's keys: its own comments over those of the built-in profiles."""
    builtin = sorted((REPO_ROOT / "bench" / "profiles").glob("*.yaml"))
    schema = _merged(builtin, lambda keys: keys)
    if path is not None and Path(path).exists():
        schema.update(declared(path))
    return schema


def param_schema(model_yaml=None) -> dict:
    """Types of model parameters by name: the model's own YAML over every model YAML and the
    profiles' ``train:`` keys."""
    schema = _merged(sorted((REPO_ROOT / "bench" / "profiles").glob("*.yaml")),
                     lambda keys: keys[1] if len(keys) == 2 and keys[0] == "train" else None)
    schema.update(_merged(sorted((REPO_ROOT / "models").glob("*.yaml")),
                          lambda keys: keys[0] if len(keys) == 1 else None))
    if model_yaml is not None:
        schema.update({k[0]: t for k, t in declared(model_yaml).items() if len(k) == 1})
    return schema


# =========================================================================== checks
def _check_value(mapping: dict, key, tree, where: str, path) -> None:
    ok, value = conform(mapping[key], tree)
    if not ok:
        raise ConfigError(f"{path}: {where}: expected {describe(tree)}, got {mapping[key]!r}")
    mapping[key] = value


def check_params(params: dict, path, prefix: str = "", model_yaml=None) -> dict:
    """Check (in place) a mapping of model parameters; undeclared keys pass."""
    schema = param_schema(model_yaml)
    for key in list(params):
        if key in schema:
            _check_value(params, key, schema[key], f"{prefix}{key}", path)
    return params


def check_model_yaml(params: dict, path) -> dict:
    """Check (in place) a model YAML against its typed comments, at every depth (``protocol_overrides.paper.causal``,
    ``tuning.embedding_dropout``); a nested key without its own comment is checked against the type of the
    parameter of that name (``tuning`` values one by one), so a wrong-typed override fails at load, naming it."""
    decl = declared(path)
    for keys, tree in sorted(decl.items(), key=lambda kv: len(kv[0])):
        node = params
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            _check_value(node, keys[-1], tree, ".".join(keys), path)
    schema = param_schema(path)
    for proto, over in (params.get("protocol_overrides") or {}).items():
        if not isinstance(over, dict):
            raise ConfigError(f"{path}: protocol_overrides.{proto}: expected a mapping of parameters, got {over!r}")
        for key in list(over):
            if key in schema and ("protocol_overrides", proto, key) not in decl:
                _check_value(over, key, schema[key], f"protocol_overrides.{proto}.{key}", path)
    for key, values in (params.get("tuning") or {}).items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: tuning.{key}: expected a non-empty list of values to try, got {values!r}")
        if key in schema:
            for i in range(len(values)):
                _check_value(values, i, schema[key], f"tuning.{key}[{i}]", path)
    return params


def check_profile(profile: dict, path) -> dict:
    """Check (in place) a loaded profile: its keys, its ``train`` budget, and the model parameters
    it sets (``model_overrides``, ``variants[].params``)."""
    schema = profile_schema(path)
    for keys, tree in sorted(schema.items(), key=lambda kv: len(kv[0])):
        node = profile
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            _check_value(node, keys[-1], tree, ".".join(keys), path)
    if isinstance(profile.get("train"), dict):
        check_params(profile["train"], path, "train.")
    for name, params in (profile.get("model_overrides") or {}).items():
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: model_overrides.{name}: expected a mapping of parameters, got {params!r}")
        check_params(params, path, f"model_overrides.{name}.", _model_yaml(name))
    for i, var in enumerate(profile.get("variants") or []):
        if not isinstance(var, dict):
            raise ConfigError(f"{path}: variants[{i}]: expected a mapping {{name, model, params, ...}}, got {var!r}")
        if isinstance(var.get("params"), dict):
            check_params(var["params"], path, f"variants[{i}].params.", _model_yaml(var.get("model", "")))
    return profile


def _model_yaml(name: str):
    """models/<name>.yaml of a model named ``name`` or ``name@dataset`` (None when absent)."""
    stem = str(name).partition("@")[0].lower()
    path = REPO_ROOT / "models" / f"{stem}.yaml"
    return path if path.exists() else None
