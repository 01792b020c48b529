"""Profiles: named budgets (YAML files in ``bench/profiles/``) and the grid they define."""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from bench.errors import BenchError
from bench.yamltypes import check_profile
from bench.zoo import discover, load_yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
# the profile every command and ./run_all.sh use when none is named (run_all.sh reads this line)
DEFAULT_PROFILE = "full"
REQUIRED = ("protocol", "datasets", "models", "seeds", "train")
KNOWN = REQUIRED + ("description", "max_users", "max_train_prefixes", "stop_users", "max_seq_len",
                    "model_overrides", "variants", "extra_evals", "determinism", "tuning", "controls", "fidelity", "priority", "cheap")
PRIORITY_KEYS = ("models", "datasets", "seeds")


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """A validated profile by name (or path to a YAML file)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILES_DIR / f"{name}.yaml"
    if not path.exists():
        raise BenchError(f"unknown profile '{name}' (known: {', '.join(profile_names())})")
    profile = load_yaml(path)
    missing = [k for k in REQUIRED if k not in profile]
    if missing:
        raise BenchError(f"{path}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(profile) - set(KNOWN))
    if unknown:
        raise BenchError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KNOWN)})")
    if not isinstance(profile.get("cheap", False), bool):
        raise BenchError(f"{path}: cheap: expected true or false, got {profile['cheap']!r}")
    check_profile(profile, path)  # typed comments: a wrong value is one line naming file and key
    profile["name"] = path.stem
    profile.setdefault("model_overrides", {})
    profile.setdefault("variants", [])
    profile.setdefault("extra_evals", {})
    profile.setdefault("max_seq_len", {})
    profile.setdefault("priority", [])
    for i, rule in enumerate(profile["priority"]):
        bad = sorted(set(rule) - set(PRIORITY_KEYS)) if isinstance(rule, dict) else [repr(rule)]
        if bad:
            raise BenchError(f"{path}: priority[{i}]: unknown key(s) {', '.join(bad)} "
                             f"(a rule is a dict of {', '.join(PRIORITY_KEYS)})")
        for key, value in rule.items():
            if not (isinstance(value, list) or (key == "models" and value == "base")):
                raise BenchError(f"{path}: priority[{i}].{key}: expected a list"
                                 + (" or 'base'" if key == "models" else "") + f", got {value!r}")
    return profile


@dataclass(frozen=True)
class Entry:
    """One run of the grid. ``model`` is the grid name (a variant has its own)."""

    dataset: str
    model: str
    seed: int
    base_model: str
    variant: tuple = field(default=())  # sorted (key, value) pairs overriding params

    @property
    def variant_params(self) -> dict:
        return dict(self.variant)


def _freeze(params: dict) -> tuple:
    return tuple(sorted((k, v if not isinstance(v, (list, dict)) else repr(v)) for k, v in params.items()))


def tuning_variants(profile: dict, specs: dict, names: list[str]) -> list[dict]:
    """Variants that vary, one at a time, each setting a model's YAML lists under ``tuning``.

    Only when the profile has ``tuning: {seeds: [...], datasets: [...]}``; the runs are
    ordinary grid entries named ``<Model>-tune-<param>=<value>``, so the validation
    scores of every setting sit in the store next to the defaults (``reports/*/tuning.md``).
    """
    if not profile.get("tuning"):
        return []
    where = {k: v for k, v in profile["tuning"].items() if k in ("seeds", "datasets")}
    out = []
    for name in names:
        spec = specs[name.lower()]
        for param, values in spec.tuning.items():
            for value in values:
                if value != spec.params.get(param):
                    out.append({"name": f"{spec.name}-tune-{param}={value}", "model": spec.name,
                                "params": {param: value}, **where})
    return out


def all_variants(profile: dict) -> list[dict]:
    """The profile's named variants plus its tuning variants."""
    specs = discover()
    names = [s.name for s in specs.values()] if profile["models"] == "all" else list(profile["models"])
    return list(profile["variants"]) + tuning_variants(profile, specs, names)


def grid(profile: dict, models=None, datasets=None, seeds=None) -> list[Entry]:
    """Every (dataset, model, seed) of a profile, variants included, filtered by the args."""
    specs = discover()
    names = [s.name for s in specs.values()] if profile["models"] == "all" else list(profile["models"])
    for name in names + [v.get("model", "") for v in profile["variants"]]:
        if name.lower() not in specs:
            raise BenchError(f"profile '{profile['name']}': unknown model '{name}'")
    variants = list(profile["variants"]) + tuning_variants(profile, specs, names)
    for key in profile["model_overrides"]:
        model, _, dataset = key.partition("@")
        if model.lower() not in specs or (dataset and dataset not in profile["datasets"]):
            raise BenchError(f"profile '{profile['name']}': model_overrides key '{key}' names no model "
                             f"(or dataset) of this profile")
    wanted_models = {m.lower() for m in models} if models else None
    if wanted_models:
        known = {n.lower() for n in names} | {v["name"].lower() for v in variants}
        bad = sorted(wanted_models - known)
        if bad:
            raise BenchError(f"model(s) {', '.join(bad)} not in profile '{profile['name']}'")
    # seed-major, and within a seed the main table before the analysis variants: an
    # interrupted grid leaves whole seeds of every model (and of the variants) behind
    entries = []
    for seed in profile["seeds"]:
        if seeds is not None and seed not in seeds:
            continue
        variant_entries = []
        for dataset in profile["datasets"]:
            if datasets and dataset not in datasets:
                continue
            for name in names:
                if wanted_models is None or name.lower() in wanted_models:
                    entries.append(Entry(dataset, specs[name.lower()].name, int(seed), specs[name.lower()].name))
            for var in variants:
                if dataset not in var.get("datasets", profile["datasets"]):
                    continue
                if seed not in var.get("seeds", profile["seeds"]):
                    continue
                if wanted_models is None or var["name"].lower() in wanted_models:
                    base = specs[var["model"].lower()].name
                    variant_entries.append(Entry(dataset, var["name"], int(seed), base, _freeze(var.get("params", {}))))
        entries += variant_entries
    return entries


def _rule_matches(rule: dict, entry: Entry) -> bool:
    """``models``: fnmatch patterns over grid names, or ``base`` (the profile's models, no variants)."""
    models = rule.get("models")
    if models == "base":
        ok_model = entry.model == entry.base_model and not entry.variant
    else:
        ok_model = models is None or any(fnmatchcase(entry.model, pattern) for pattern in models)
    return (ok_model and entry.dataset in rule.get("datasets", [entry.dataset])
            and entry.seed in rule.get("seeds", [entry.seed]))


def prioritised(profile: dict, entries: list[Entry]) -> list[Entry]:
    """Entries reordered by the profile's ``priority`` rules: those the first rule matches (in
    grid order), then the second's, ..., then the rest in grid order.

    A rule whose ``models`` pattern matches no model of the grid is an error: a typo there would
    silently demote the runs it meant to put first.
    """
    rules = profile.get("priority", [])
    names = {e.model for e in grid(profile)} if rules else set()
    for i, rule in enumerate(rules):
        for pattern in (rule.get("models") or []) if rule.get("models") != "base" else []:
            if not any(fnmatchcase(name, pattern) for name in names):
                raise BenchError(f"profile '{profile['name']}': priority[{i}]: models pattern '{pattern}' "
                                 f"matches no model of the grid")
    rank = {}
    for e in entries:
        rank[e] = next((i for i, rule in enumerate(rules) if _rule_matches(rule, e)), len(rules))
    return sorted(entries, key=lambda e: rank[e])  # stable: grid order within a rule
