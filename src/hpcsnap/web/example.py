"""The example simulation shipped with the project (``examples/heat``), as the form's
"Load example" fills it in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hpcsnap

#: ``examples/heat/heat.py`` of the source checkout this package runs from (``make run``
#: installs it in editable mode); absent from a plain wheel install.
HEAT = Path(hpcsnap.__file__).resolve().parents[2] / "examples" / "heat" / "heat.py"

#: Files of the example, by the name they get in /job.
FILES = {"heat.py": HEAT}

FIELDS: dict[str, Any] = {
    "name": "heat-example",
    "command": "python3 heat.py --np 2 --end-time 3 --write-interval 0.1 --step-seconds 1",
    "profile": "docker-batch",
    "wall_time": "00:10:00",
    "environment": "",
    "result_bucket": "",
    "results_whitelist": "",
    "results_blacklist": "",
    "upload_on_cancel": True,
    "snapshot_enabled": True,
    "snapshot_interval": "5",
    "snapshot_unit": "s",
    "snapshot_whitelist": "",
    "snapshot_blacklist": "processor\\d+",
    "snapshot_bucket": "",
    "snapshot_prefix": "",
    "expected_size": "",
    "expected_unit": "MiB",
    # What heat.py writes, so the preview shows what each filter keeps.
    "sample_paths": "\n".join(
        [
            "log.heatFoam",
            "postProcessing/probes/0/T",
            "processor0/0.1/T",
            "processor1/0.1/T",
            "processor0/0.2/T",
            "processor1/0.2/T",
        ]
    ),
}


def available() -> bool:
    return all(p.is_file() for p in FILES.values())


def description() -> dict[str, Any]:
    return {
        "fields": FIELDS,
        "files": [{"name": name, "url": f"/ui/example/{name}"} for name in FILES],
    }
