"""Write psf's NVFlare job: the hub's workflow on the server, the hospital script on every client.

The job names no hospital (it goes to all clients that join), carries the training plan and the path
of the hub's public HE context (a path on the hub's machine), and nothing a hospital keeps to itself.
"""

from __future__ import annotations

from pathlib import Path

from psf.errors import MissingDependency

JOB_NAME = "psf_federation"
SCRIPT = Path(__file__).with_name("script") / "hospital_main.py"
# Sites run psf's classes from the installed package (not from the job's custom/ folder); their
# component allow-list must admit this prefix (resources.json: "class_allow_list").
ALLOW_PREFIX = "psf.fed"


def nvflare_version() -> str:
    try:
        import nvflare
    except ImportError as exc:
        raise MissingDependency("NVIDIA FLARE", "federated") from exc
    return nvflare.__version__


def build_job(plan: dict, he_public: Path, min_clients: int, task_timeout: int = 0, state_dir: Path | None = None,
              record_hub_inbox: Path | None = None):
    """A FedJob; `record_hub_inbox` (tests, audits) adds a filter that saves every result the hub receives."""
    nvflare_version()
    from nvflare.client.config import ExchangeFormat
    from nvflare.fuel.utils.constants import FrameworkType
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.defs import FilterType
    from nvflare.job_config.script_runner import ScriptRunner

    from psf.fed.hub import HubController

    job = FedJob(name=JOB_NAME, min_clients=min_clients)
    job.set_app_packages(["psf"])
    job.to_server(HubController(plan=plan, he_public=str(he_public), min_clients=min_clients,
                                task_timeout=task_timeout, state_dir=str(state_dir.resolve()) if state_dir else ""))
    if record_hub_inbox is not None:
        from psf.fed.inbox import InboxRecorder

        from psf.fed.hospital import TASK_ENCODE, TASK_FINISH, TASK_ROUND

        job.to_server(InboxRecorder(folder=str(Path(record_hub_inbox).resolve())), filter_type=FilterType.TASK_RESULT,
                      tasks=[TASK_ROUND, TASK_ENCODE, TASK_FINISH])  # NVFlare's "*" does not reach custom task names
    job.to_clients(ScriptRunner(script=str(SCRIPT), framework=FrameworkType.RAW,
                                server_expected_format=ExchangeFormat.RAW))
    return job
