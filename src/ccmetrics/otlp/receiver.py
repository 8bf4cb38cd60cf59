"""What both transports share: an export's bytes in, stored data and an OTLP response out.

Decompressing, parsing and normalising run on a worker thread, never on the event loop: one export can hold
hundreds of thousands of points, and the dashboard, the health check and every other client must keep being
answered meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from ..access.gate import Gate
from ..access.tokens import Principal
from ..records import Batch, TrustedAttributes
from ..store import Store, StoreUnavailable
from .decode import DecodeError, Signal, decompress, parse
from .normalize import to_batch

log = logging.getLogger(__name__)

# An export this small (Claude Code's are a few KiB) is decoded on the event loop, in well under a
# millisecond; a larger or compressed one on a worker thread, so that none holds the loop up.
SMALL_BODY_BYTES = 64 * 1024
DECODERS = 2  # worker threads that decode exports: enough to keep both cores busy, and bounded memory
# A large export is handed to the store in parts of this many records, one after the other: handing over is
# done on the event loop, and so must take a few milliseconds at most. (A retried export is stored once, so
# an export stored in parts is as safe as one stored whole.)
PART_RECORDS = 5000

ExportResponse = ExportMetricsServiceResponse | ExportLogsServiceResponse | ExportTraceServiceResponse
_REJECTED_FIELD = {
    Signal.METRICS: "rejected_data_points",
    Signal.LOGS: "rejected_log_records",
    Signal.TRACES: "rejected_spans",
}


@dataclass(frozen=True)
class Intake:
    """The rules every export is held to, from the settings."""

    max_body_bytes: int
    store_prompts: bool = False
    max_clock_skew_s: int = 600


class ExportFailed(Exception):
    """Something went wrong that is not the client's fault: it should send the export again."""


class Receiver:
    def __init__(self, store: Store, intake: Intake, gate: Gate | None = None) -> None:
        self.store = store
        self.intake = intake
        self.gate = gate  # None: every sender is let in
        self._decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="ccmetrics-decode")

    def admit(self, authorization: str | None) -> Principal | None:
        """Who sends, from the request's ``Authorization``, before its body is read; raises
        ``access.gate.Refused`` for a sender who may not."""
        return self.gate.admit(authorization) if self.gate is not None else None

    async def export(
        self,
        signal: Signal,
        body: bytes,
        media: str,
        encoding: str | None = None,
        source: str = "",
        trusted: TrustedAttributes | None = None,
    ) -> Message:
        """Store what is usable and answer with the Export*ServiceResponse, ``partial_success`` filled in.

        Returns only after the data is committed. Raises ``DecodeError`` for what is not valid OTLP (the
        client must not send it again) and ``ExportFailed`` for anything else (it should).
        """
        try:
            if len(body) <= SMALL_BODY_BYTES and encoding in (None, "identity"):
                batch = self._batch(signal, body, media, encoding, source, trusted)
            else:
                batch = await asyncio.get_running_loop().run_in_executor(
                    self._decoders, self._batch, signal, body, media, encoding, source, trusted
                )
            results = [await self.store.write(part) for part in batch.parts(PART_RECORDS)]
        except (DecodeError, asyncio.CancelledError):
            raise
        except StoreUnavailable as exc:
            log.warning("refusing an export: %s", exc)
            raise ExportFailed(str(exc)) from None
        except Exception as exc:
            log.exception("could not store an export")
            raise ExportFailed(f"could not store the export ({type(exc).__name__}); retry") from None
        response = cast(ExportResponse, signal.response_type())
        rejected = batch.rejected + sum(result.rejected for result in results)
        problems = list(dict.fromkeys(batch.problems + [p for r in results for p in r.problems]))
        if rejected or problems:
            setattr(response.partial_success, _REJECTED_FIELD[signal], rejected)
            response.partial_success.error_message = "; ".join(problems)
        return response

    def _batch(
        self,
        signal: Signal,
        body: bytes,
        media: str,
        encoding: str | None,
        source: str,
        trusted: TrustedAttributes | None,
    ) -> Batch:
        raw = decompress(body, encoding, self.intake.max_body_bytes)
        batch = to_batch(
            signal,
            parse(signal, raw, media),
            store_prompts=self.intake.store_prompts,
            latest_ns=time.time_ns() + self.intake.max_clock_skew_s * 1_000_000_000,
            trusted=trusted,
        )
        batch.source = source
        return batch

    def close(self) -> None:
        self._decoders.shutdown(wait=False, cancel_futures=True)
        if self.gate is not None:
            self.gate.close()
