"""Card -> verified source file -> user sequences (cached) -> RecBole atomic files.

Every dataset becomes a ``Sequences``: each user's full chronological item sequence,
concatenated into one flat array.  The leave-one-out split is positional: the last
item is the test target, the second to last the validation target, the rest is
training data.  Item ids are 1-based; 0 is padding, as in RecBole.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

CARDS_DIR = Path(__file__).resolve().parent / "cards"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "diffurec"
CACHE_VERSION = 1  # bump when the cached format changes


class DataError(Exception):
    """Missing, mismatching or malformed data; the message names the file."""


@dataclass
class Sequences:
    """All users' sequences. ``items[offsets[u]:offsets[u+1]]`` is user u's sequence.

    items:   (n_actions,) int32, 1-based item ids
    offsets: (n_users + 1,) int64
    n_items: number of item ids *including* the padding id 0 (RecBole's ``num``)
    users:   (n_users,) int64, index of each user in the full dataset
    """

    name: str
    items: np.ndarray
    offsets: np.ndarray
    n_items: int
    sha256: str
    users: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """(n_users,) full sequence length of each user."""
        return np.diff(self.offsets)

    def sequence(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    @property
    def valid_items(self) -> np.ndarray:
        """(n_users,) second-to-last item of each user."""
        return self.items[self.offsets[1:] - 2]

    @property
    def test_items(self) -> np.ndarray:
        """(n_users,) last item of each user."""
        return self.items[self.offsets[1:] - 1]

    def subset(self, users: np.ndarray) -> "Sequences":
        """The same catalogue restricted to ``users`` (indices into this object)."""
        users = np.asarray(users, dtype=np.int64)
        parts = [self.sequence(u) for u in users]
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in parts])
        items = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        return Sequences(self.name, items, offsets, self.n_items, self.sha256, self.users[users])


def card_names() -> list[str]:
    return sorted(p.stem for p in CARDS_DIR.glob("*.yaml"))


def load_card(name: str) -> dict:
    """The card of dataset ``name``; unknown names list the known ones."""
    path = CARDS_DIR / f"{name}.yaml"
    if not path.exists():
        raise DataError(f"unknown dataset '{name}' (known: {', '.join(card_names())})")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DataError(f"malformed YAML in {path}: {err}".replace("\n", " ")) from None
    for key in ("name", "file", "format", "max_seq_len", "paper"):
        if key not in card:
            raise DataError(f"{path}: missing field '{key}'")
    return card


def resolve_data_dir(cli_value: str | os.PathLike | None = None) -> Path:
    """``--data-dir``, else ``$BENCH_DATA_DIR``, else ``../shared/data/diffurec``."""
    if cli_value:
        return Path(cli_value)
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"])
    return DEFAULT_DATA_DIR


def cache_root() -> Path:
    """Git-ignored folder for prepared data: ``$BENCH_CACHE_DIR`` or ``.cache/data``."""
    return Path(os.environ.get("BENCH_CACHE_DIR") or REPO_ROOT / ".cache" / "data")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_source(card: dict, data_dir: Path) -> tuple[Path, str]:
    """Path and SHA-256 of the card's file, checked *before* anything parses it."""
    path = Path(data_dir) / card["file"]
    expected = card.get("sha256")
    if not path.exists():
        hint = f" (expected SHA-256 {expected})" if expected else ""
        raise DataError(
            f"data file for '{card['name']}' not found: {path}{hint}; "
            "set --data-dir or BENCH_DATA_DIR"
        )
    actual = sha256_file(path)
    if expected and actual != expected:
        raise DataError(f"checksum mismatch for {path}: expected SHA-256 {expected}, got {actual}")
    return path, actual


def _from_lists(name: str, seqs: list[list[int]], n_items: int, sha: str) -> Sequences:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    items = np.fromiter((i for s in seqs for i in s), dtype=np.int32, count=int(offsets[-1]))
    return Sequences(name, items, offsets, n_items, sha, np.arange(len(seqs), dtype=np.int64))


def read_diffurec_pickle(path: Path, name: str, sha: str) -> Sequences:
    """The authors' dict of train/val/test per user index (see the data README)."""
    try:
        with open(path, "rb") as handle:
            raw = pickle.load(handle)  # checksum verified by the caller
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as err:
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err}); "
                        "truncated or replaced? fetch it again") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a dict with train/val/test, got {type(raw).__name__}")
    for key in ("train", "val", "test"):
        if key not in raw:
            raise DataError(f"{path}: field '{key}' missing from the pickle")
    users = sorted(raw["train"])
    seqs = [list(raw["train"][u]) + list(raw["val"][u]) + list(raw["test"][u]) for u in users]
    short = [u for u, s in zip(users, seqs) if len(s) < 3]
    if short:
        raise DataError(f"{path}: {len(short)} users have < 3 items (first: user {short[0]})")
    n_items = max(max(s) for s in seqs) + 1
    return _from_lists(name, seqs, n_items, sha)


def five_core(pairs: list[tuple[str, str]], k: int = 5) -> tuple[list[tuple[str, str]], dict]:
    """Iteratively drop users and items with fewer than ``k`` actions."""
    report = {"actions_in": len(pairs), "rounds": 0}
    while True:
        users = Counter(u for u, _ in pairs)
        items = Counter(i for _, i in pairs)
        kept = [(u, i) for u, i in pairs if users[u] >= k and items[i] >= k]
        if len(kept) == len(pairs):
            break
        pairs, report["rounds"] = kept, report["rounds"] + 1
    report["actions_out"] = len(pairs)
    report["was_5core"] = report["rounds"] == 0
    return pairs, report


def read_steam_txt(path: Path, name: str, sha: str) -> Sequences:
    """BERT4Rec's steam.txt: ``user item`` per line, chronological within a user."""
    pairs = []
    with open(path) as handle:
        for lineno, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(f"{path}:{lineno}: expected 'user_id item_id', got {line.strip()!r}")
            pairs.append((fields[0], fields[1]))
    pairs, report = five_core(pairs)
    if not pairs:
        raise DataError(f"{path}: nothing left after the 5-core filter")
    item_ids: dict[str, int] = {}
    by_user: dict[str, list[int]] = {}
    for user, item in pairs:
        by_user.setdefault(user, []).append(item_ids.setdefault(item, len(item_ids) + 1))
    seqs = list(by_user.values())
    result = _from_lists(name, seqs, len(item_ids) + 1, sha)
    result.five_core_report = report
    return result


READERS = {"diffurec-pickle": read_diffurec_pickle, "steam-txt": read_steam_txt}


def load_sequences(name: str, data_dir=None, use_cache: bool = True) -> Sequences:
    """Verified, cached ``Sequences`` of dataset ``name``.

    The cache key is the source checksum, so a changed file is re-read.
    """
    card = load_card(name)
    path, sha = verified_source(card, resolve_data_dir(data_dir))
    cache = cache_root() / f"{name}-{sha[:16]}-v{CACHE_VERSION}" / "sequences.npz"
    if use_cache and cache.exists():
        try:
            with np.load(cache) as z:
                return Sequences(name, z["items"], z["offsets"], int(z["n_items"]), sha, z["users"])
        except Exception:  # truncated or damaged (a killed write, a full disk): rebuilt from the source
            cache.unlink(missing_ok=True)
    if card["format"] not in READERS:
        raise DataError(f"{CARDS_DIR / (name + '.yaml')}: unknown format '{card['format']}'")
    seqs = READERS[card["format"]](path, name, sha)
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, items=seqs.items, offsets=seqs.offsets, n_items=seqs.n_items, users=seqs.users)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".sequences.")  # parallel runs may race here
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, cache)
    return seqs


def write_atomic(seqs: Sequences, folder: Path, dataset_name: str) -> Path:
    """Write ``<folder>/<dataset_name>/<dataset_name>.inter`` for RecBole.

    The timestamp is the position in the user's sequence, so RecBole's
    ``order: TO`` + ``LS: valid_and_test`` reproduces the positional split exactly.
    Returns the folder to pass as RecBole's ``data_path``.
    """
    target = Path(folder) / dataset_name / f"{dataset_name}.inter"
    if target.exists():
        return Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    lengths = seqs.lengths
    users = np.repeat(seqs.users, lengths)
    positions = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], lengths)
    body = "\n".join(f"{u}\t{i}\t{p}" for u, i, p in zip(users, seqs.items, positions))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".inter.")
    with os.fdopen(fd, "w") as handle:
        handle.write("user_id:token\titem_id:token\ttimestamp:float\n" + body + "\n")
    os.replace(tmp, target)
    return Path(folder)


def atomic_files(name: str, data_dir=None) -> tuple[Path, str]:
    """Cached atomic files of the whole dataset: (RecBole data_path, dataset name)."""
    seqs = load_sequences(name, data_dir)
    recbole_name = f"bench_{name}"
    folder = cache_root() / f"{name}-{seqs.sha256[:16]}-v{CACHE_VERSION}" / "atomic"
    return write_atomic(seqs, folder, recbole_name), recbole_name


def table1(seqs: Sequences) -> dict:
    """Table 1 statistics of the paper computed from the sequences."""
    items = len(np.unique(seqs.items))
    actions = int(len(seqs.items))
    return {
        "sequences": seqs.n_users,
        "items": items,
        "actions": actions,
        "avg_len": actions / max(seqs.n_users, 1),
        "sparsity": 100.0 * (1 - actions / (seqs.n_users * items)),
    }


def stats_rows(names: list[str], data_dir=None) -> list[dict]:
    """Table 1 rows (ours next to the paper's, with flags) for the available datasets."""
    rows = []
    for name in names:
        card = load_card(name)
        row = {"dataset": name, "title": card.get("title", name)}
        try:
            ours = table1(load_sequences(name, data_dir))
        except DataError as err:
            rows.append({**row, "status": f"unavailable: {err}"})
            continue
        flags = [
            key
            for key, paper_value in card["paper"].items()
            if not np.isclose(ours[key], paper_value, rtol=0.005, atol=0.01)
        ]
        rows.append({**row, "status": "ok", "ours": ours, "paper": card["paper"], "differs": flags})
    return rows


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=float)
