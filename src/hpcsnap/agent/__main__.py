"""``python -m hpcsnap.agent``: the process an executor starts for one task."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hpcsnap.agent.client import AgentClient
from hpcsnap.agent.priority import lower_this_session
from hpcsnap.agent.runner import TaskRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcsnap-agent", description=__doc__)
    parser.add_argument("--server", required=True, help="base URL of the hpcsnap server")
    parser.add_argument("--task", required=True, help="task uuid")
    parser.add_argument("--work-dir", required=True, type=Path, help="where task dirs live")
    args = parser.parse_args(argv)
    token = os.environ.pop("HPCSNAP_AGENT_TOKEN", "")
    if not token:
        parser.error("HPCSNAP_AGENT_TOKEN is not set")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s agent[%(process)d] %(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    lower_this_session()  # the job runs in a session of its own, at its normal priority
    client = AgentClient(args.server, args.task, token)
    try:
        return TaskRunner(client, args.work_dir, args.task).run()
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
