"""Batching requests for the same model version into one forward pass, across tenants.

Which requests go together is the fairness policy's choice (the controller asks it for each slot, and
charges each pick before asking again), so batching never lets a tenant skip ahead of its share; this
module only says how large a batch may grow and how long the first request may wait for company, and
merges/splits the tensors.

A model is batchable when every input and output has a free first axis (``ANY_DIM``): rows of several
requests are then concatenated along it and the outputs cut back by each request's row count. A batch's
measured time is later split among its requests by their cost hints, so each tenant pays for its rows.
A request that may join a batch must submit ``tokens.predict(model, inputs)`` as its work, so that run
alone or in a batch it yields the same ``Prediction``.

The same merging also cuts a large request (or batch) into ``predict`` calls of at most the model's
``chunk_rows`` rows (``RequestLimits``). Between two calls the worker asks whether each request is still
wanted (deadline not passed, client still there) and skips the rows of those that are not, so a request
nobody waits for any more stops holding the device within one call's time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any

from inference_images.runtime.models.base import ANY_DIM, Model, Tensor
from inference_images.runtime.tokens import Prediction, count_tokens


@dataclass(frozen=True, slots=True)
class BatchLimit:
    """How large a batch of one model may grow, and how long its first request may wait to fill it."""

    max_size: int = 1
    max_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.max_size}")
        if self.max_wait_s < 0:
            raise ValueError(f"batch wait must not be negative, got {self.max_wait_s}")

    @classmethod
    def parse(cls, text: str) -> tuple[str, BatchLimit]:
        """``MODEL:SIZE[:WAIT_MS]`` from the command line -> (model name, limit)."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or not parts[0]:
            raise ValueError(f"batch spec {text!r} must be MODEL:SIZE or MODEL:SIZE:WAIT_MS")
        try:
            size = int(parts[1])
            wait_ms = float(parts[2]) if len(parts) == 3 else 0.0
        except ValueError:
            raise ValueError(f"batch spec {text!r}: SIZE must be an integer and WAIT_MS a number") from None
        return parts[0], cls(size, wait_ms / 1000.0)


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    """Per-model limits (by model name); models not named run one request at a time."""

    limits: Mapping[str, BatchLimit]

    def limit(self, model: str) -> BatchLimit:
        return self.limits.get(model, _NO_BATCHING)


_NO_BATCHING = BatchLimit()
NO_BATCHING = BatchingConfig({})


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request's share of a possible batch: the model and its validated inputs."""

    model: Model
    inputs: Mapping[str, Tensor]
    # Rows per predict call for this model (RequestLimits.chunk_rows); None: all rows in one call.
    chunk_rows: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.model.name, self.model.version)

    @property
    def rows(self) -> int:
        return next(iter(self.inputs.values())).shape[0] if self.inputs else 0


def batchable(model: Model) -> bool:
    specs = (*model.inputs, *model.outputs)
    return bool(specs) and all(spec.shape and spec.shape[0] == ANY_DIM for spec in specs)


def _concat(tensors: Sequence[Tensor]) -> Tensor:
    first = tensors[0]
    if len(tensors) == 1:
        return first  # a request run whole: the model gets its tensors as they came, parameters included
    data: list[Any] = []
    for tensor in tensors:
        data.extend(tensor.data)
    return Tensor(first.name, first.datatype, (sum(t.shape[0] for t in tensors), *first.shape[1:]), data)


def _split(tensor: Tensor, rows: Sequence[int]) -> list[Tensor]:
    if len(rows) == 1:
        return [tensor]
    per_row = prod(tensor.shape[1:])
    out, start = [], 0
    for n in rows:
        end = start + n * per_row
        out.append(Tensor(tensor.name, tensor.datatype, (n, *tensor.shape[1:]), tensor.data[start:end]))
        start = end
    return out


def _rows(tensor: Tensor, start: int, end: int) -> Tensor:
    if start == 0 and end == tensor.shape[0]:
        return tensor
    per_row = prod(tensor.shape[1:])
    return Tensor(tensor.name, tensor.datatype, (end - start, *tensor.shape[1:]),
                  tensor.data[start * per_row:end * per_row])


# (item index, first row, end row): a run of one item's rows still to compute.
_Segment = tuple[int, int, int]


def _take(pending: deque[_Segment], room: int) -> list[_Segment]:
    """The next call's rows: whole segments in order while they fit, then part of the next one."""
    taken: list[_Segment] = []
    while pending:
        i, start, end = pending[0]
        if end - start > room:
            if room > 0:
                taken.append((i, start, start + room))
                pending[0] = (i, start + room, end)
            break
        taken.append(pending.popleft())
        room -= end - start
    return taken


def _always(index: int) -> bool:
    return True


class BatchRun:
    """The rows of every item (same model) in ``predict`` calls of at most ``chunk_rows`` rows, one call
    per ``step``, outputs cut back per item, each with its own token count: between two calls the worker
    may let another tenant's request run and resume this one later.

    Before each call, ``wanted(i)`` says whether item ``i`` is still worth computing; an item that is not
    gets no more calls and None as its result. Runs on the worker thread. An error fails every request
    of the batch, as a failed forward pass would.
    """

    def __init__(self, items: Sequence[BatchItem], wanted: Callable[[int], bool] = _always) -> None:
        self.items = items
        self.wanted = wanted
        chunk = min((item.chunk_rows for item in items if item.chunk_rows is not None), default=None)
        self.pending: deque[_Segment] = deque((i, 0, item.rows) for i, item in enumerate(items))
        self.room = chunk if chunk is not None else sum(item.rows for item in items) or 1
        self.pieces: list[list[list[Tensor]]] = [[] for _ in items]  # per item: its outputs from each call
        self.dropped: set[int] = set()

    @property
    def done(self) -> bool:
        return not self.pending

    def step(self) -> None:
        self.dropped.update(i for i in {s[0] for s in self.pending} if not self.wanted(i))
        self.pending = deque(s for s in self.pending if s[0] not in self.dropped)
        if not self.pending:
            return
        model, items = self.items[0].model, self.items
        taken = _take(self.pending, self.room)
        merged = {
            name: _concat([_rows(items[i].inputs[name], start, end) for i, start, end in taken])
            for name in items[0].inputs
        }
        per_output = [_split(tensor, [end - start for _, start, end in taken]) for tensor in model.predict(merged)]
        for k, (i, _, _) in enumerate(taken):
            self.pieces[i].append([parts[k] for parts in per_output])

    def results(self) -> list[Prediction | None]:
        model, pieces = self.items[0].model, self.pieces
        return [
            None if i in self.dropped else Prediction(
                [_concat([call[j] for call in pieces[i]]) for j in range(len(pieces[i][0]))],
                count_tokens(model, item.inputs),
            )
            for i, item in enumerate(self.items)
        ]


def run_batch(items: Sequence[BatchItem], wanted: Callable[[int], bool] = _always) -> list[Prediction | None]:
    """A BatchRun to its end, on the calling thread."""
    run = BatchRun(items, wanted)
    while not run.done:
        run.step()
    return run.results()
