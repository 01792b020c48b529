"""The GPU sweep's Python side (``bench/gpu_sweep.sh``, docs/gpu.md "GPU sweep of the full profile").

    python -m bench.gpu_sweep gate --record DIR [--profile P] --device cuda --out DIR
    python -m bench.gpu_sweep pack --store DIR --out DIR [--first FILE…] [--last FILE…]
    python -m bench.gpu_sweep collect --src DIR --results DIR --reports DIR --quarantine DIR

``gate``: `bench reproduce`'s rule on one committed CPU record rerun on the device; the verdict is
``gate.md`` / ``gate.json``, and it passes when the rerun is identical or equivalent.
``pack``: the finished records into at most ``PACK_PARTS`` self-contained ``.tgz`` parts of at most
``PACK_PART_BYTES`` each (and ``PACK_TOTAL_BYTES`` together): what a device call can bring back.
``collect``: the parts into the results store, new runs only, and only when the gate passed.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import store
from bench.errors import BenchError

MIB = 1 << 20
# A device call brings back 8 files of 16 MiB, 64 MiB together: 7 parts and summary.txt, with margin.
DEFAULT_LIMITS = {"PACK_PARTS": 7, "PACK_PART_BYTES": 15 * MIB, "PACK_TOTAL_BYTES": 60 * MIB}
PART_STEM = "full-results"
GATE_JSON, GATE_MD = "gate.json", "gate.md"
PASSING = ("identical", "equivalent")  # bench reproduce's exit 0 and 3
BLOCK = 512


# =========================================================================== pack
@dataclass
class Item:
    """One member group of the pack: files that travel together under their names in the tar."""
    name: str
    files: list = field(default_factory=list)  # [(path on disk, name in the tar)]

    def bound(self) -> int:
        """Bytes this item can add to a gzipped tar at most: a header (and room for a PAX header) and
        padded data per file, and gzip's stored-block overhead for data that does not compress
        (ranks.npz already is)."""
        raw = sum(3 * BLOCK + math.ceil(Path(p).stat().st_size / BLOCK) * BLOCK for p, _ in self.files)
        return raw + raw // 1000 + 64


def limits_from_env(env=os.environ) -> dict:
    """PACK_PARTS, PACK_PART_BYTES, PACK_TOTAL_BYTES from the environment (ints), else the defaults."""
    out = {}
    for key, default in DEFAULT_LIMITS.items():
        try:
            out[key] = int(env.get(key, default))
        except ValueError:
            raise BenchError(f"{key}={env[key]!r}: give a whole number") from None
    return out


def record_items(store_root) -> list[Item]:
    """One item per run folder with a record under ``store_root`` (``<results>/<profile>``), oldest
    record first: a later pack then appends, so the parts already filled keep their content."""
    root = Path(store_root)
    folders = sorted((p.parent for p in root.glob("*/*/seed-*/record.json")), key=lambda f: (f.joinpath(
        "record.json").stat().st_mtime, str(f)))
    items = []
    for folder in folders:
        rel = folder.relative_to(root.parent)
        files = [(folder / n, str(rel / n)) for n in store.RUN_FILES if (folder / n).is_file()]
        items.append(Item(str(rel), files))
    return items


def file_items(paths, prefix: str) -> list[Item]:
    """One item per existing file, named ``<prefix>/<file name>`` in the tar."""
    return [Item(f"{prefix}/{Path(p).name}", [(Path(p), f"{prefix}/{Path(p).name}")])
            for p in paths if Path(p).is_file()]


def plan_parts(items: list[Item], part_bytes: int, max_parts: int, total_bytes: int) -> tuple[list, list]:
    """(parts, left out): items in order into parts of at most ``part_bytes`` (bound), at most
    ``max_parts`` of them and ``total_bytes`` together; an item that does not fit is left out and the
    later ones still tried, so one large record does not hide the small ones after it."""
    end = 2 * BLOCK + 64  # the tar's end blocks and the gzip header and trailer
    parts, sizes, left = [[]], [end], []
    for item in items:
        b = item.bound()
        if sizes[-1] + b <= part_bytes and sum(sizes) + b <= total_bytes:
            parts[-1].append(item)
            sizes[-1] += b
        elif len(parts) < max_parts and end + b <= part_bytes and sum(sizes) + end + b <= total_bytes:
            parts.append([item])
            sizes.append(end + b)
        else:
            left.append(item)
    return [p for p in parts if p], left


def _tar_bytes(items: list[Item]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in items:
            for path, arcname in item.files:
                tar.add(str(path), arcname=arcname, recursive=False)
    return buffer.getvalue()


def write_parts(parts: list, out_dir, stem: str = PART_STEM) -> list[Path]:
    """Each part as ``<stem>-<i>.tgz`` in ``out_dir``, written to a temporary name and renamed, so a
    call cut short mid-pack returns whole tarballs; parts left from an earlier, larger pack are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, items in enumerate(parts):
        path = out_dir / f"{stem}-{i}.tgz"
        tmp = out_dir / f".{path.name}.tmp"
        tmp.write_bytes(_tar_bytes(items))
        os.replace(tmp, path)
        written.append(path)
    for old in out_dir.glob(f"{stem}-*.tgz"):
        if old not in written:
            old.unlink()
    return written


def pack(store_root, out_dir, first=(), last=(), limits=None) -> dict:
    """Pack ``first`` files (the gate), the records of ``store_root``, then ``last`` files (logs) into
    parts under ``out_dir``; {parts: [paths], packed: [names], left_out: [names]}."""
    limits = limits or limits_from_env()
    items = file_items(first, "gate") + (record_items(store_root) if Path(store_root).is_dir() else []) \
        + file_items(last, "logs")
    parts, left = plan_parts(items, limits["PACK_PART_BYTES"], limits["PACK_PARTS"], limits["PACK_TOTAL_BYTES"])
    paths = write_parts(parts, out_dir)
    for path in paths:
        if path.stat().st_size > limits["PACK_PART_BYTES"]:  # the bound is meant to make this impossible
            raise BenchError(f"{path}: {path.stat().st_size} bytes, over PACK_PART_BYTES={limits['PACK_PART_BYTES']}")
    return {"parts": [str(p) for p in paths], "packed": [i.name for p in parts for i in p],
            "left_out": [i.name for i in left]}


def describe_records(store_root) -> str:
    """One line on the records of ``store_root``: how many, how many ok, and the devices they name."""
    recs = [store.read_record(p.parent) for p in sorted(Path(store_root).glob("*/*/seed-*/record.json"))]
    devices = sorted({str((r.get("env") or {}).get("device")) for r in recs})
    return f"{len(recs)} records ({sum(r.get('status') == 'ok' for r in recs)} ok), trained on: {', '.join(devices) or '–'}"


# =========================================================================== gate
def gate(record_dir, device: str, out_dir, profile=None, data_dir=None) -> dict:
    """Rerun the CPU record ``record_dir`` on ``device`` and judge it by `bench reproduce`'s rule;
    writes ``gate.json`` and ``gate.md`` in ``out_dir`` (a placeholder first: a gate stopped at the
    deadline still says so) and returns the verdict's dict."""
    from bench.audit.reproduce import format_reproduce, reproduce

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_gate(out_dir, {"verdict": "unfinished", "passed": False, "record": str(record_dir), "device": device},
               f"# Equivalence gate\n\nunfinished: the rerun of {record_dir} on {device} was stopped (deadline).\n")
    try:
        res = reproduce(record_dir, data_dir=data_dir, profile_name=profile, device=device)
    except BenchError as err:  # the verdict file must not say "stopped at the deadline" for a bad input
        write_gate(out_dir, {"verdict": "error", "passed": False, "record": str(record_dir), "device": device,
                             "error": str(err)}, f"# Equivalence gate\n\nerror: {err}\n")
        raise
    rerun_device = next((r["rerun"] for r in res.get("environment", []) if r["key"] == "device"), device)
    summary = {"verdict": res["verdict"], "passed": res["verdict"] in PASSING, "record": str(record_dir),
               "run": res["run"], "device": rerun_device, "seconds": res["seconds"],
               "checks": res.get("checks", []), "metrics": res.get("metrics_reported", [])}
    md = (f"# Equivalence gate: {res['run']} on {rerun_device}\n\n"
          f"**{res['verdict']}** — {'passed' if summary['passed'] else 'FAILED'}: GPU-made records "
          f"{'may' if summary['passed'] else 'may not'} enter the tables (`bench reproduce`'s rule: identical or "
          "equivalent passes).\n\n```\n" + format_reproduce(res) + "\n```\n")
    write_gate(out_dir, summary, md)
    return summary


def write_gate(out_dir, summary: dict, md: str) -> None:
    """The gate's two files, each atomically."""
    store.write_json(Path(out_dir) / GATE_JSON, summary)
    store.write_bytes(Path(out_dir) / GATE_MD, md.encode())


def read_gate(folder) -> dict:
    """The gate's verdict found in ``folder`` (``gate.json``); a 'missing' verdict when there is none."""
    path = Path(folder) / GATE_JSON
    if not path.is_file():
        return {"verdict": "missing", "passed": False}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise BenchError(f"{path}: damaged gate verdict ({err})") from None


# =========================================================================== collect
def unpack_parts(src, dest) -> list[Path]:
    """Extract every ``<stem>-<i>.tgz`` of ``src`` into ``dest``; the parts found."""
    parts = sorted(Path(src).glob(f"{PART_STEM}-*.tgz"))
    for part in parts:
        try:
            with tarfile.open(part) as tar:
                tar.extractall(dest, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise BenchError(f"{part}: cannot unpack ({err}); fetch the device call's files again") from None
    return parts


def collect(src, results_dir, reports_dir, quarantine) -> dict:
    """Bring a sweep's parts home: new run folders into ``results_dir`` when the gate passed, else into
    ``quarantine`` (kept out of every table); committed runs are never overwritten.  The gate's files go
    to ``<reports>/<profile>/gpu-gate.md|json``."""
    with tempfile.TemporaryDirectory(prefix="bench-gpu-collect-") as tmp:
        parts = unpack_parts(src, tmp)
        if not parts:
            raise BenchError(f"{src}: no {PART_STEM}-*.tgz; is it the files_at folder of a gpu_sweep.sh call?")
        verdict = read_gate(Path(tmp) / "gate")
        target = Path(results_dir) if verdict.get("passed") else Path(quarantine)
        added, kept = [], []
        for rec in sorted(Path(tmp).glob("*/*/*/seed-*/record.json")):
            rel = rec.parent.relative_to(tmp)
            if rel.parts[0] in ("gate", "logs"):
                continue
            if (Path(results_dir) / rel / "record.json").exists():
                kept.append(str(rel))
                continue
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(rec.parent, target / rel, dirs_exist_ok=True)
            added.append(str(rel))
        profiles = sorted({Path(r).parts[0] for r in added + kept})
        for profile in profiles:
            for name in (GATE_MD, GATE_JSON):
                if (Path(tmp) / "gate" / name).is_file():
                    (Path(reports_dir) / profile).mkdir(parents=True, exist_ok=True)
                    shutil.copy(Path(tmp) / "gate" / name, Path(reports_dir) / profile / f"gpu-{name}")
    return {"gate": verdict, "target": str(target), "added": added, "kept": kept, "parts": len(parts)}


# =========================================================================== CLI
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gate", help="rerun one CPU record on the device; gate.md/json (exit 0 when it passes)")
    g.add_argument("--record", required=True, help="the committed CPU record's folder")
    g.add_argument("--profile", default=None, help="profile name or YAML (default: the record's)")
    g.add_argument("--device", required=True)
    g.add_argument("--out", required=True)
    p = sub.add_parser("pack", help="finished records into size-limited parts (PACK_* in the environment)")
    p.add_argument("--store", required=True, help="<results>/<profile> of the sweep")
    p.add_argument("--out", required=True)
    p.add_argument("--first", nargs="*", default=[], help="files packed before the records (the gate)")
    p.add_argument("--last", nargs="*", default=[], help="files packed after the records, if room is left (logs)")
    c = sub.add_parser("collect", help="unpack parts into the results store (new runs, gate passed)")
    c.add_argument("--src", required=True, help="the files_at folder of the device call")
    c.add_argument("--results", required=True)
    c.add_argument("--reports", required=True)
    c.add_argument("--quarantine", required=True, help="where the runs go when the gate did not pass")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except BenchError as err:
        print(f"gpu_sweep {args.cmd}: {err}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.cmd == "gate":
        res = gate(args.record, args.device, args.out, args.profile)
        print(f"gate {res['run']} on {res['device']}: {res['verdict']} ({'passed' if res['passed'] else 'FAILED'})")
        return 0 if res["passed"] else 1
    if args.cmd == "pack":
        res = pack(args.store, args.out, args.first, args.last)
        print(f"packed {len(res['packed'])} items into {len(res['parts'])} parts"
              + (f"; left out (no room): {' '.join(res['left_out'])}" if res["left_out"] else ""))
        print(describe_records(args.store))
        return 0
    res = collect(args.src, args.results, args.reports, args.quarantine)
    gate_line = f"gate {res['gate'].get('verdict')} ({'passed' if res['gate'].get('passed') else 'not passed'})"
    print(f"{res['parts']} parts; {gate_line}; {len(res['added'])} new runs into {res['target']}; "
          f"{len(res['kept'])} already committed, left as they are")
    return 0 if res["gate"].get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
