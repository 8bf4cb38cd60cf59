"""What both transports share: turn a decoded export into stored data and an OTLP response."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from ..store import Store
from .decode import Signal
from .normalize import to_batch

_REJECTED_FIELD = {
    Signal.METRICS: "rejected_data_points",
    Signal.LOGS: "rejected_log_records",
    Signal.TRACES: "rejected_spans",
}


async def ingest(store: Store, signal: Signal, request: Message, *, store_prompts: bool) -> Message:
    """Store what is usable and answer with the Export*ServiceResponse, ``partial_success`` filled in.

    Returns only after the data is committed; raises ``StoreUnavailable`` when it could not be.
    """
    batch = to_batch(signal, request, store_prompts=store_prompts)
    await store.write(batch)
    response: Any = signal.response_type()  # the Export*ServiceResponse of the signal
    if batch.rejected or batch.problems:
        setattr(response.partial_success, _REJECTED_FIELD[signal], batch.rejected)
        response.partial_success.error_message = batch.message
    return response
