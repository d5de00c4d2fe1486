"""The `batches` namespace of `AsyncClient`: the awaited twin of `_batches`.

batch = await client.batches.create(AGENT, [{"custom_id": "q-1", "message": "営業時間は?"}])
batch = await client.batches.wait(batch.id)
async for result in client.batches.iter_results(batch.id):
    print(result.custom_id, result.status, result.response)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from kaiwa.client import _calls as calls
from kaiwa.client._async_resources import PAGE_SIZE, _Resource
from kaiwa.client._batches import MAX_WAIT_INTERVAL, WAIT_INTERVAL, WAIT_TIMEOUT
from kaiwa.client._calls import AgentId, BatchRequest, BatchWebhook, Id
from kaiwa.client._exceptions import KaiwaError
from kaiwa.client._models import Batch, BatchItemResult, Page


class AsyncBatches(_Resource):
    async def create(
        self,
        agent_id: AgentId,
        requests: Sequence[BatchRequest],
        *,
        webhook: BatchWebhook | None = None,
        idempotency_key: str | None = None,
    ) -> Batch:
        """Store a batch of 1–1000 requests; they run in the background.

        Everything is checked first: a bad request raises (`BadRequestError` naming
        `requests[i].field`, `NotFoundError` for an unknown agent, chat or file) and nothing is
        stored.
        """
        return await self._client._call(
            calls.create_batch(
                agent_id=agent_id,
                requests=requests,
                webhook=webhook,
                idempotency_key=idempotency_key,
            )
        )

    async def list(self, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0) -> Page[Batch]:
        """One page of batches, newest first."""
        return await self._client._call(calls.list_batches(limit=limit, offset=offset))

    def iter_all(self, *, page_size: int = PAGE_SIZE) -> AsyncIterator[Batch]:
        return self._client._paginate(
            lambda offset: calls.list_batches(limit=page_size, offset=offset)
        )

    async def get(self, batch_id: Id) -> Batch:
        return await self._client._call(calls.get_batch(batch_id))

    async def results(
        self, batch_id: Id, *, limit: int = calls.DEFAULT_LIMIT, offset: int = 0
    ) -> Page[BatchItemResult]:
        """One page of the outcomes, in the order of the requests."""
        return await self._client._call(calls.batch_results(batch_id, limit=limit, offset=offset))

    def iter_results(
        self, batch_id: Id, *, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[BatchItemResult]:
        """Every outcome, one page at a time."""
        return self._client._paginate(
            lambda offset: calls.batch_results(batch_id, limit=page_size, offset=offset)
        )

    async def cancel(self, batch_id: Id) -> Batch:
        """Cancel the requests not yet answered and stop those running; an ended batch raises
        `BadRequestError`."""
        return await self._client._call(calls.cancel_batch(batch_id))

    async def wait(
        self,
        batch_id: Id,
        *,
        timeout: float = WAIT_TIMEOUT,  # noqa: ASYNC109 (a deadline for polling, not one call)
        interval: float = WAIT_INTERVAL,
    ) -> Batch:
        """Poll until the batch has ended (`Batch.ended`); raises `KaiwaError` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            batch = await self.get(batch_id)
            if batch.ended:
                return batch
            if time.monotonic() >= deadline:
                raise KaiwaError(f"Batch {batch_id} had not ended after {timeout:g} s")
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, MAX_WAIT_INTERVAL)
