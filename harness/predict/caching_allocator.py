"""What PyTorch's CUDA caching allocator reserves for a sequence of allocations and frees: its rules replayed, so that
a prediction of `torch.cuda.max_memory_reserved` (and of what nvidia-smi shows, the reserve plus the CUDA context)
says what the allocator's cached and split blocks add over the live tensors. No torch here; the sequence comes
from a traced run (harness/measure/allocation_log.py).

The rules are those of c10/cuda/CUDACachingAllocator.cpp with its default configuration (no max_split_size_mb,
no expandable segments, no garbage collection threshold, one stream):
- a request is rounded up to a multiple of 512 bytes (round_size; harness/predict/allocator.py says it once);
- requests up to 1 MiB come from the small pool, larger ones from the large pool (get_pool);
- a request takes the smallest free block of its pool that holds it, the lowest address among equal sizes
  (get_free_block: the pool is a set ordered by size, then address);
- where none does, a segment is reserved (cudaMalloc): 2 MiB for a small request, 20 MiB for one under 10 MiB,
  else the request rounded up to 2 MiB (get_allocation_size);
- the block is split where what remains is at least 512 bytes (small pool) or more than 1 MiB (large pool); else
  the request takes the whole block, and `memory_allocated` counts the whole block (should_split,
  alloc_found_block);
- a freed block merges with its free neighbours in the same segment (free_block, try_merge_blocks);
- nothing reserved is released: segments go back to the driver only on empty_cache or when a cudaMalloc fails
  (release_cached_blocks), which a run that fits does not reach; so the peak reserved is the reserve at the end.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from harness.predict.allocator import CUDA_BLOCK_BYTES, rounded
from harness.units import MIB

SMALL_REQUEST_BYTES = 1 * MIB  # kSmallSize: the largest request the small pool serves
SMALL_SEGMENT_BYTES = 2 * MIB  # kSmallBuffer
LARGE_SEGMENT_BYTES = 20 * MIB  # kLargeBuffer: what a request between 1 and 10 MiB reserves
LARGE_PACKED_BELOW_BYTES = 10 * MIB  # kMinLargeAlloc
LARGE_ROUND_BYTES = 2 * MIB  # kRoundLarge


def segment_bytes(size: int) -> int:
    """What a cudaMalloc for a (rounded) request of `size` bytes reserves (get_allocation_size)."""
    if size <= SMALL_REQUEST_BYTES:
        return SMALL_SEGMENT_BYTES
    if size < LARGE_PACKED_BELOW_BYTES:
        return LARGE_SEGMENT_BYTES
    return -(-size // LARGE_ROUND_BYTES) * LARGE_ROUND_BYTES


def splits(small: bool, remaining: int) -> bool:
    """Whether a block is split, leaving `remaining` bytes free (should_split)."""
    return remaining >= CUDA_BLOCK_BYTES if small else remaining > SMALL_REQUEST_BYTES


@dataclass(eq=False)
class Block:
    """A range of one segment: allocated, or free in its pool."""

    address: int
    size: int
    small: bool
    prev: Block | None = None
    next: Block | None = None
    allocated: bool = False


@dataclass
class CachingAllocator:
    """The allocator's state: each pool's free blocks ordered by (size, address), the bytes reserved (every
    segment) and allocated (every allocated block, whole), and their peaks."""

    free_blocks: dict = field(default_factory=lambda: {True: [], False: []})
    by_address: dict = field(default_factory=dict)
    reserved_bytes: int = 0
    allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    peak_allocated_bytes: int = 0
    segments: int = 0

    def _insert_free(self, block: Block) -> None:
        bisect.insort(self.free_blocks[block.small], (block.size, block.address))
        self.by_address[block.address] = block

    def _remove_free(self, block: Block) -> None:
        del self.by_address[block.address]
        pool = self.free_blocks[block.small]
        del pool[bisect.bisect_left(pool, (block.size, block.address))]

    def _new_segment(self, size: int, small: bool) -> Block:
        reserved = segment_bytes(size)
        # segments lie apart, in the order they are reserved (cudaMalloc's addresses are not known here): blocks of
        # two segments never merge, and among free blocks of one size the older segment's is taken first
        block = Block(address=self.reserved_bytes * 2 + self.segments, size=reserved, small=small)
        self.reserved_bytes += reserved
        self.segments += 1
        self.peak_reserved_bytes = max(self.peak_reserved_bytes, self.reserved_bytes)
        return block

    def malloc(self, nbytes: int) -> Block | None:
        """The block a request of `nbytes` gets (None for 0 bytes: the allocator is not called)."""
        if nbytes == 0:
            return None
        size = rounded(nbytes)  # the caching allocator rounds whatever the environment says
        small = size <= SMALL_REQUEST_BYTES
        pool = self.free_blocks[small]
        at = bisect.bisect_left(pool, (size, -1))
        if at < len(pool):
            block = self.by_address[pool[at][1]]
            self._remove_free(block)
        else:
            block = self._new_segment(size, small)
        if splits(small, block.size - size):
            rest = Block(address=block.address + size, size=block.size - size, small=small, prev=block, next=block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._insert_free(rest)
        block.allocated = True
        self.allocated_bytes += block.size
        self.peak_allocated_bytes = max(self.peak_allocated_bytes, self.allocated_bytes)
        return block

    def free(self, block: Block | None) -> None:
        """Return `block` to its pool, merged with its free neighbours."""
        if block is None:
            return
        block.allocated = False
        self.allocated_bytes -= block.size
        for neighbour in (block.prev, block.next):
            if neighbour is None or neighbour.allocated:
                continue
            self._remove_free(neighbour)
            if neighbour is block.prev:
                block.address, block.prev = neighbour.address, neighbour.prev
                if block.prev is not None:
                    block.prev.next = block
            else:
                block.next = neighbour.next
                if block.next is not None:
                    block.next.prev = block
            block.size += neighbour.size
        self._insert_free(block)
