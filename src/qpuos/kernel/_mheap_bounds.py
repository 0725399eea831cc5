"""How big a pool must be so that an arena can never run out: ``pool_size_for``."""

from __future__ import annotations

import operator

from qpuos.errors import UsageError
from qpuos.kernel._mheap_layout import (
    HDR,
    MAX_ALIGN,
    MIN_HEAP,
    STRATEGIES,
    TABLES_W,
    TLSF,
    block_bytes,
    layout_for,
    tlsf_class_floor,
)

__all__ = ["pool_size_for", "worst_case_heap"]

#: bytes a block can exceed its request by: rounding to 16 (15), the header (16), and a
#: 16-byte tail too small to split off (16); the 32-byte minimum block is within this
BLOCK_SLACK = 47


def worst_case_heap(max_live: int, largest: int, *, strategy: str = "tlsf",
                    min_request: int = 1, max_align: int = 16) -> int:
    """Heap bytes (blocks and headers, no bookkeeping) that no request sequence exhausts.

    See ``pool_size_for`` for the model and the derivation; this is its steps 1-4.
    """
    max_live, largest, min_request, max_align = (
        operator.index(v) for v in (max_live, largest, min_request, max_align))
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; use 'tlsf' or 'first_fit'")
    if not 1 <= min_request <= largest <= max_live:
        raise UsageError(f"need 1 <= min_request <= largest <= max_live; got min_request="
                         f"{min_request}, largest={largest}, max_live={max_live}")
    if not 1 <= max_align <= MAX_ALIGN or max_align & (max_align - 1):
        raise UsageError(f"max_align must be a power of two up to {MAX_ALIGN}; "
                         f"got {max_align}")
    # 1-2. live blocks besides the failing request, and the bytes they can occupy
    k = (max_live - min_request) // min_request
    live = max_live - min_request + BLOCK_SLACK * k
    # 3. the largest hole that can coexist with a failure
    need = block_bytes(largest)
    search = need if max_align <= 16 else need + max_align + HDR
    # TLSF fails when no block reaches the class floor; first fit when none reaches search
    hole = (tlsf_class_floor(search) if STRATEGIES[strategy] == TLSF else search) - 16
    # 4. a failure fills the heap with live blocks and at most k + 1 holes
    return live + (k + 1) * hole + 16


def pool_size_for(max_live: int, largest: int, *, strategy: str = "tlsf",
                  min_request: int = 1, max_align: int = 16) -> int:
    """Bytes of buffer for an arena that provably never raises ``HeapExhausted``.

    The guarantee covers every sequence of ``alloc``/``free``/``realloc`` in which each
    live request is between ``min_request`` and ``largest`` bytes, the requests live at
    once (counting the one being made, and both blocks during a ``realloc`` that moves)
    sum to at most ``max_live`` bytes, and no ``align`` exceeds ``max_align``.

    Derivation (sizes in bytes; ``need(r)`` is the block a request of r bytes takes,
    ``max(32, ceil16(r) + 16)``):

    1. A live block exceeds its request by at most 47 bytes: up to 15 of rounding, the
       16-byte header, and a 16-byte remainder the allocator may leave attached because
       it is too small to be a block of its own (a free block needs 32).
    2. Suppose a request of r >= min_request bytes fails. The other live requests sum to
       at most ``max_live - r``, so there are at most
       ``k = (max_live - min_request) // min_request`` live blocks, occupying at most
       ``L = max_live - min_request + 47 k`` bytes.
    3. Free blocks are coalesced the moment they touch, so holes and live blocks
       alternate: at most ``k + 1`` holes. A failure means no hole is large enough:
       first fit tries every hole, so each is below ``need(r)`` (plus ``align + 16`` of
       alignment slack when ``align > 16``); TLSF's good-fit search rounds the size up to
       its class (at most 1/32 more) and looks only at classes above, so each hole is
       below that class's floor. Both are largest for ``r = largest``: call it ``hole``.
    4. At the failure the heap holds nothing but those blocks and holes, so
       ``heap <= L + (k + 1) * hole``. A heap 16 bytes larger cannot reach that state:
       ``worst_case_heap`` returns it.
    5. The pool adds the arena's own bookkeeping (header, undo log, TLSF tables, and the
       live-block bitmap, 1/128 of the heap): the smallest pool whose layout's heap is at
       least ``worst_case_heap``.

    Published figures, and why we do not use them: o1heap's README quotes Robson's
    first-fit bound as ``M (1 + ceil(log2 n))`` (Robson 1975; Knuth, TAOCP vol. 1,
    section 2.5, exercise 43 states ``n H_m / ln 2``) and puts TLSF with best fit,
    ``M (n - 2)``. The first-fit theorem counts abstract cells with no headers and a
    placement rule we have not proved ours maps onto, so it is not a guarantee we can
    sign; TLSF's class rounding makes it, if anything, slightly worse than best fit. The
    bound above rests on two facts we can check in the code (coalescing, and when each
    strategy fails) and holds for both, so it is linear in ``max_live / min_request``
    times ``largest``: the best-fit class. It is loose against every adversary we have:
    the doubling attack in ``tests/kernel/test_mheap_bounds.py`` (allocate blocks of size
    s up to ``max_live``, free every block whose neighbouring holes stay below 2s, double
    s) needs 3 to 6 times ``max_live`` of heap, 5 to 50 times less than this bound, and
    exhausts pools smaller than what it needs. Raise ``min_request`` (the smallest block
    your code ever asks for) to tighten the bound.

    Args:
        max_live: the most bytes of requests live at once.
        largest: the largest single request.
        strategy: ``"tlsf"`` or ``"first_fit"``.
        min_request: the smallest single request.
        max_align: the largest ``align`` passed to ``alloc``/``realloc``.

    Returns:
        The buffer size in bytes, a multiple of 16.

    Raises:
        UsageError: inconsistent arguments.

    >>> pool_size_for(4096, 512, strategy="first_fit", min_request=64)
    42416
    """
    heap = worst_case_heap(max_live, largest, strategy=strategy, min_request=min_request,
                           max_align=max_align)
    strat = STRATEGIES[strategy]
    pool = heap + TABLES_W * 8  # grows to fit the bookkeeping, which grows with the pool
    while True:
        try:
            lay = layout_for(pool, strat)
        except UsageError:  # not even the minimum heap fits yet
            pool += MIN_HEAP
            continue
        if lay.heap_bytes >= heap:
            return lay.pool
        pool += (heap - lay.heap_bytes + 15) // 16 * 16
