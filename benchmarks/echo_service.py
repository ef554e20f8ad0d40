"""The bench's reference: a bare BentoML service that only echoes its input.

`make bench-api` serves it beside the real service and sends it the same
requests, so the figures show what BentoML and HTTP cost on this machine before
any of our work.
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from pydantic import Field


@bentoml.service(name="bare")
class Bare:
    @bentoml.api
    def predict(
        self,
        customers: Annotated[list[dict], Field(min_length=1, max_length=10_000)],
    ) -> dict:
        """Echo the records back."""
        return {"predictions": customers}
