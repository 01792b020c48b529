"""The GPU check's report (``bench/gpu_session.sh``): the smoke grid on the device against the
same grid on that machine's CPU, run by run, and the device's timings on full Beauty.

    python -m bench.gpu_report --cpu STORE --device-store STORE --speed DIR --out DIR

Writes ``<out>/gpu-<device>.md`` and ``.json``.  GPU kernels reduce in other orders than
the CPU's, and TF32 (when on) rounds matmul inputs, so the two stores are not expected to
be identical; the table says how far apart they are.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from bench import store
from bench.fmt import md_table

SHOWN = ("HR@10", "NDCG@10")


def compare_stores(cpu_root, dev_root) -> list[dict]:
    """One row per run present in both stores: test metrics on each side and the users whose
    test rank differs.  ``cpu_root``/``dev_root``: ``<results>/<profile>`` folders."""
    rows = []
    for path in sorted(Path(dev_root).glob("*/*/seed-*/record.json")):
        rel = path.parent.relative_to(dev_root)
        dev, cpu = store.read_record(path.parent), store.read_record(Path(cpu_root) / rel)
        if cpu is None or dev.get("status") != "ok" or cpu.get("status") != "ok":
            rows.append({"run": str(rel), "status": f"cpu {cpu and cpu.get('status')}, device {dev.get('status')}"})
            continue
        a, b = store.read_ranks(Path(cpu_root) / rel)["test"], store.read_ranks(path.parent)["test"]
        row = {"run": str(rel), "status": "ok", "users": int(len(a)),
               "users_changed": int(np.sum(a != b)) if len(a) == len(b) else None}
        for m in SHOWN:
            row[f"cpu {m}"], row[f"device {m}"] = cpu["metrics"]["test"][m], dev["metrics"]["test"][m]
        rows.append(row)
    return rows


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def render(rows: list[dict], speed: dict | None, env: dict) -> str:
    """Markdown of the comparison and the timings."""
    ok = [r for r in rows if r["status"] == "ok"]
    lines = [f"# GPU check — {env.get('device', '?')}", "",
             f"torch {env.get('torch')}, precision flags {json.dumps(env.get('precision', {}), sort_keys=True)}; "
             f"git {str(env.get('git_revision', ''))[:10]}.", "",
             "## Smoke grid (seed 0): the device against the same machine's CPU", "",
             f"{len(ok)} runs compared; {sum(1 for r in ok if r['users_changed'] == 0)} with every test rank equal.", ""]
    header = ["run", "users", "users changed"] + [f"{side} {m}" for m in SHOWN for side in ("cpu", "device")]
    body = [[r["run"], str(r["users"]), str(r["users_changed"])] +
            [f"{100 * r[f'{side} {m}']:.3f}" for m in SHOWN for side in ("cpu", "device")] for r in ok]
    body += [[r["run"], "–", r["status"]] + ["–"] * (len(header) - 3) for r in rows if r["status"] != "ok"]
    lines += [md_table(header, body), ""]
    if speed:
        lines += ["## Full Beauty at the paper profile's settings, on the device", "",
                  md_table(["model", "instances", "batches", "s/epoch", "full validation s"],
                           [[r["model"], f"{r['suite']['instances']:,}", str(r["suite"]["batches"]),
                             f"{r['suite']['epoch_s']:.1f}", f"{r['suite']['eval_s']:.1f}"] for r in speed["rows"]]),
                  ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_report", description=__doc__)
    parser.add_argument("--cpu", required=True, help="the smoke store run on the CPU (<results>/smoke)")
    parser.add_argument("--device-store", required=True, help="the same grid run on the device")
    parser.add_argument("--speed", default=None, help="folder of the device's speed-*.json")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    rows = compare_stores(args.cpu, args.device_store)
    speed = None
    if args.speed and list(Path(args.speed).glob("speed-*.json")):
        speed = json.loads(sorted(Path(args.speed).glob("speed-*.json"))[0].read_text())
    first = next(iter(sorted(Path(args.device_store).glob("*/*/seed-*/record.json"))), None)
    env = (store.read_record(first.parent) or {}).get("env", {}) if first else {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{device_slug(env.get('device', 'device'))}"
    (out / f"{stem}.md").write_text(render(rows, speed, env) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({"rows": rows, "speed": speed, "env": env}, indent=1))
    print((out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
