"""The deployments, one per flow and named like it (prefect.yaml declares the same for ``prefect deploy``:
``distill/distill``); ``elfdd serve`` serves them all from one process under the name ``served``
(``distill/served``), so that neither replaces the other's deployments on a server that has both."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ..core.errors import BadInput
from .flows import FLOWS

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


SERVED = "served"  # the deployment name of every flow ``elfdd serve`` serves


def serve(limit: int = 1) -> None:
    """Register every flow as a deployment ``<flow>/served`` on the server of PREFECT_API_URL and run its flow runs
    here."""
    from prefect import serve as serve_deployments
    from prefect.deployments.runner import EntrypointType
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise BadInput(
            "elfdd serve needs a Prefect server: start one (prefect server start) and set PREFECT_API_URL"
        )
    deployments = [  # to_deployment is synchronous outside an event loop (typed as either)
        cast(
            "RunnerDeployment",
            flow.to_deployment(name=SERVED, tags=["elfdd"], entrypoint_type=EntrypointType.MODULE_PATH),
        )
        for flow in FLOWS.values()
    ]
    serve_deployments(*deployments, limit=limit)
