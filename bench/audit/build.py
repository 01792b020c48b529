"""``audit``: every section of ``bench check`` run on one profile, as one JSON-able dict."""
from __future__ import annotations

import os
import time
from pathlib import Path

from bench import store
from bench.audit.claims import CLAIMS_FILE, evaluate_claims
from bench.audit.determinism import determinism, determinism_plan
from bench.audit.environment import environment_section
from bench.audit.integrity import DataCache, integrity
from bench.audit.protocol import protocol_sensitivity
from bench.audit.view import ResultsView
from bench.fmt import display_path, scrub_paths
from bench.profiles import load_profile
from bench.report.index import records_stamp
from datasets.prepare import DEFAULT_DATA_DIR, resolve_data_dir


def _no_machine_path(shown: str) -> str:
    """A folder outside the repository is named by its last part only: a committed audit names no
    machine's paths (``/tmp/…/check`` -> ``<outside the repository>/check``)."""
    return f"<outside the repository>/{Path(shown).name}" if os.path.isabs(shown) else shown


def _shown_paths(results_dir, data_dir) -> dict:
    """{absolute folder: shown form} of the results and data folders (relative to the repository, else
    ``_no_machine_path``)."""
    data = resolve_data_dir(data_dir)
    return {os.path.abspath(results_dir): _no_machine_path(display_path(results_dir)),
            os.path.abspath(data): _no_machine_path(display_path(data, default=DEFAULT_DATA_DIR))}


def _scrub(obj, folders: dict):
    """``obj`` with every string's absolute results/data folder replaced by its shown form."""
    if isinstance(obj, str):
        return scrub_paths(obj, folders)
    if isinstance(obj, dict):
        return {k: _scrub(v, folders) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, folders) for v in obj]
    return obj


def audit(profile_name: str, results_dir, data_dir=None, run_determinism: bool = True,
          claims_file=CLAIMS_FILE, device="cpu") -> dict:
    """Everything of ``bench check`` as one JSON-able dict.

    Keys: profile, results_dir, data_dir (as reports show them), newest_record (the latest
    record's ``created``), records_stamp (``bench.report.index.records_stamp``), integrity, determinism, protocol_sensitivity, claims,
    environment, seconds (wall time; not written to the audit files).  ``device``: where
    the determinism set is re-run.
    """
    t0 = time.perf_counter()
    profile = load_profile(profile_name)
    folders = _shown_paths(results_dir, data_dir)
    result = {"profile": profile["name"], "results_dir": folders[os.path.abspath(results_dir)],
              "data_dir": folders[os.path.abspath(resolve_data_dir(data_dir))]}
    result["integrity"] = integrity(profile, results_dir, DataCache(data_dir))
    if run_determinism:
        result["determinism"] = determinism(profile, results_dir, data_dir, device=device)
    else:
        result["determinism"] = {"status": "skipped", "reason": "--skip-determinism", "runs": [],
                                 "plan": determinism_plan(profile)}
    records = store.load_records(results_dir, profile["name"], status=None)
    stamps = [str(r["created"]) for r in records if r.get("created")]
    result["newest_record"] = max(stamps) if stamps else None
    result["records_stamp"] = records_stamp(records)  # index.md states the same stamp: same records, or stale
    view = ResultsView(records, controls=profile.get("controls"))  # the control claims quote its family
    result["protocol_sensitivity"] = protocol_sensitivity(view)
    result["claims"] = evaluate_claims(view, claims_file)
    result["environment"] = environment_section([r for r in records if r.get("status") == "ok"])
    result = _scrub(result, folders)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result
