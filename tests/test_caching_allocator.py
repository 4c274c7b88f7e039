"""The caching allocator's rules (harness/predict/caching_allocator.py) against sequences counted by hand from
c10/cuda/CUDACachingAllocator.cpp's constants, and, for any sequence (hypothesis), the allocator's own invariants:
every segment is covered by its blocks, no two free neighbours are left unmerged, nothing reserved is released."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.predict.caching_allocator import CachingAllocator, segment_bytes
from harness.units import MIB


def test_small_requests_share_two_mib_segments():
    a = CachingAllocator()
    first = a.malloc(1)
    assert (a.allocated_bytes, a.reserved_bytes, a.segments) == (512, 2 * MIB, 1)  # rounded up to 512 bytes
    a.free(first)
    blocks = [a.malloc(512) for _ in range(4096)]  # 4096 x 512 B fill one 2 MiB segment exactly
    assert (a.allocated_bytes, a.reserved_bytes, a.segments) == (2 * MIB, 2 * MIB, 1)
    a.malloc(512)
    assert (a.reserved_bytes, a.segments) == (4 * MIB, 2)
    assert a.malloc(0) is None and a.allocated_bytes == 2 * MIB + 512  # 0 bytes: the allocator is not called
    assert len(blocks) == 4096


def test_requests_between_one_and_ten_mib_are_packed_in_twenty():
    a = CachingAllocator()
    for _ in range(6):  # six 3 MiB blocks split from one 20 MiB segment, 2 MiB left free
        a.malloc(3 * MIB)
    assert (a.allocated_bytes, a.reserved_bytes, a.segments) == (18 * MIB, 20 * MIB, 1)
    a.malloc(3 * MIB // 2)  # fits the 2 MiB left; 0.5 MiB would remain, not > 1 MiB: the whole block is taken
    assert (a.allocated_bytes, a.reserved_bytes) == (20 * MIB, 20 * MIB)
    a.malloc(3 * MIB)
    assert (a.reserved_bytes, a.segments) == (40 * MIB, 2)


def test_large_requests_reserve_their_size_rounded_to_two_mib():
    assert segment_bytes(10 * MIB) == 10 * MIB
    assert segment_bytes(10 * MIB - 512) == 20 * MIB  # under 10 MiB: a 20 MiB segment
    assert segment_bytes(MIB) == 2 * MIB and segment_bytes(MIB + 512) == 20 * MIB
    a = CachingAllocator()
    a.malloc(11 * MIB + 1)  # 11 MiB + 512 B in a 12 MiB segment; 1 MiB - 512 B left is too small to split
    assert (a.allocated_bytes, a.reserved_bytes) == (12 * MIB, 12 * MIB)


def test_the_best_fit_is_taken_and_split():
    a = CachingAllocator()
    big, small = a.malloc(30 * MIB), a.malloc(12 * MIB)
    a.free(big)
    a.free(small)
    assert (a.allocated_bytes, a.reserved_bytes) == (0, 42 * MIB)  # freed blocks stay reserved
    a.malloc(11 * MIB)  # the 12 MiB block, not the 30 MiB one; 1 MiB left is not split off
    assert (a.allocated_bytes, a.reserved_bytes) == (12 * MIB, 42 * MIB)
    a.malloc(28 * MIB)  # the 30 MiB block, split: 2 MiB left free
    a.malloc(2 * MIB)  # that 2 MiB remainder: no new segment
    assert (a.allocated_bytes, a.reserved_bytes, a.segments) == (42 * MIB, 42 * MIB, 2)


def test_freed_neighbours_merge():
    a = CachingAllocator()
    x, y, z = (a.malloc(3 * MIB) for _ in range(3))
    a.free(y)
    a.free(x)  # x and y merge into one 6 MiB free block at x's address, beside the 11 MiB tail after z
    assert sorted(a.free_blocks[False]) == [(6 * MIB, x.address), (11 * MIB, z.address + 3 * MIB)]
    again = a.malloc(6 * MIB)  # exactly the merged block: no new segment, nothing split
    assert (again.address, again.size, a.segments) == (x.address, 6 * MIB, 1)
    a.free(again)
    a.free(z)
    assert a.free_blocks[False] == [(20 * MIB, x.address)]  # the whole segment, one block again
    assert a.peak_allocated_bytes == 9 * MIB and a.peak_reserved_bytes == 20 * MIB


def _segments(a: CachingAllocator, live: list) -> dict:
    """{head address: [blocks in address order]}, walked from every block the allocator knows of."""
    heads = {}
    for block in [*live, *a.by_address.values()]:
        while block.prev is not None:
            block = block.prev
        chain = []
        while block is not None:
            chain.append(block)
            block = block.next
        heads[chain[0].address] = chain
    return heads


SIZES = st.one_of(st.integers(0, 4096), st.integers(1, 3 * MIB), st.integers(MIB, 40 * MIB))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), SIZES, st.integers(0, 10**6)), max_size=60))
def test_any_sequence_keeps_the_allocator_consistent(ops):
    a, live, requested = CachingAllocator(), [], 0
    for allocate, size, pick in ops:
        if allocate or not live:
            block = a.malloc(size)
            if block is not None:
                assert block.size >= size and block.size % 512 == 0
                live.append(block)
        else:
            a.free(live.pop(pick % len(live)))
        requested = sum(b.size for b in live)
        segments = _segments(a, live)
        assert a.allocated_bytes == requested <= a.reserved_bytes == a.peak_reserved_bytes
        assert sum(b.size for chain in segments.values() for b in chain) == a.reserved_bytes
        for chain in segments.values():
            assert all(x.address + x.size == y.address for x, y in zip(chain, chain[1:]))  # contiguous
            assert not any(not x.allocated and not y.allocated for x, y in zip(chain, chain[1:]))  # merged
        free = sorted((b.size, b.address) for chain in segments.values() for b in chain if not b.allocated)
        assert free == sorted(a.free_blocks[True] + a.free_blocks[False])
