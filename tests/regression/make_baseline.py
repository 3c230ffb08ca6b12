"""Write ``tests/data/baseline_outputs.json.gz`` from the code as it is now.

Run from the repository root: ``python -m tests.regression.make_baseline``. Only do this
when outputs are meant to change, and say why in the commit.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

from .scenarios import BASELINE, SCENARIOS, run_scenario


def main() -> None:
    baseline = {}
    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as folder:
            baseline[scenario.name] = run_scenario(scenario, Path(folder))
        n_files = sum(len(tree) for tree in baseline[scenario.name].values())
        print(f"{scenario.name}: {n_files} files")
    BASELINE.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(baseline, indent=0, sort_keys=True)
    with gzip.GzipFile(BASELINE, "wb", mtime=0) as stream:
        stream.write(text.encode())
    print(f"wrote {BASELINE} ({BASELINE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
