"""The block pool: prefix lookups, sharing, and a property test that admitting, finishing
and cancelling requests in any order never leaks a block, frees one twice, or keeps more
cached than the budget."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.blocks import BlockPool, OutOfBlocks, blocks_for, digests
from engine.config import BLOCK_SIZE


def test_a_digest_names_the_whole_prefix_not_only_its_block():
    a = digests([1] * BLOCK_SIZE + [2] * BLOCK_SIZE)
    b = digests([3] * BLOCK_SIZE + [2] * BLOCK_SIZE)
    assert len(a) == len(b) == 2
    assert a[1] != b[1]
    # A partial block has no digest; digests go on from where an earlier call stopped.
    ids = list(range(3 * BLOCK_SIZE + 5))
    whole = digests(ids)
    assert len(whole) == 3
    assert digests(ids, after=whole[0], start=1) == whole[1:]


def test_a_prompt_finds_the_blocks_an_earlier_one_left_and_shares_them():
    pool = BlockPool(blocks=16, cache_blocks=8)
    ids = list(range(3 * BLOCK_SIZE))
    held = [pool.allocate() for _ in range(3)]
    for block, digest in zip(held, digests(ids), strict=True):
        pool.remember(block, digest)

    # While the first still holds them, a second request that diverges in block 3 shares 2.
    other = digests(ids[: 2 * BLOCK_SIZE] + [999] * BLOCK_SIZE)
    shared = pool.match(other)
    assert shared == held[:2]
    assert pool.refs(held[0]) == 2
    for block in held + shared:
        pool.release(block)

    assert pool.held == 0 and pool.cached == 3
    assert pool.match(digests(ids)) == held


def test_the_least_recently_used_prefix_leaves_first_when_the_budget_is_full():
    pool = BlockPool(blocks=16, cache_blocks=2)
    stories = [[n] * BLOCK_SIZE for n in (1, 2, 3)]
    blocks = []
    for story in stories:
        block = pool.allocate()
        pool.remember(block, digests(story)[0])
        blocks.append(block)
    pool.release(blocks[0])
    pool.release(blocks[1])
    pool.release(pool.match(digests(stories[0]))[0])  # story 0 used again: now the newest
    pool.release(blocks[2])

    assert pool.cached == 2
    assert pool.match(digests(stories[1])) == []
    assert len(pool.match(digests(stories[0]))) == 1


def test_with_no_free_block_the_oldest_cached_one_is_reused_and_forgotten():
    pool = BlockPool(blocks=3, cache_blocks=4)
    a, b = pool.allocate(), pool.allocate()
    pool.remember(a, digests([7] * BLOCK_SIZE)[0])
    pool.release(a)
    c = pool.allocate()
    assert c == a
    assert pool.match(digests([7] * BLOCK_SIZE)) == []
    with pytest.raises(OutOfBlocks):
        pool.allocate()
    pool.release(b)
    pool.release(c)
    with pytest.raises(ValueError):
        pool.release(c)


# A step of the property test: (verb, request index, prompt family, length).
steps = st.lists(
    st.tuples(
        st.sampled_from(["admit", "finish", "cancel", "grow"]),
        st.integers(min_value=0, max_value=7),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=1, max_value=6 * BLOCK_SIZE),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, cache_blocks=st.integers(min_value=0, max_value=12))
def test_blocks_are_never_leaked_nor_freed_twice_in_any_order(steps, cache_blocks):
    pool = BlockPool(blocks=64, cache_blocks=cache_blocks)
    # Three families of prompts that share beginnings with each other.
    families = [[f * 1000 + i for i in range(8 * BLOCK_SIZE)] for f in range(3)]
    families[1][: 2 * BLOCK_SIZE] = families[0][: 2 * BLOCK_SIZE]
    live: dict[int, tuple[list[int], list[int]]] = {}  # request -> (ids, blocks)

    for verb, request, family, length in steps:
        if verb == "admit" and request not in live:
            ids = families[family][:length]
            found = pool.match(digests(ids[: len(ids) - 1]))
            blocks = found + [pool.allocate() for _ in range(blocks_for(len(ids)) - len(found))]
            live[request] = (ids, blocks)
        elif verb == "grow" and request in live:
            ids, blocks = live[request]
            ids = ids + [5000 + request] * (length % BLOCK_SIZE + 1)
            blocks += [pool.allocate() for _ in range(blocks_for(len(ids)) - len(blocks))]
            live[request] = (ids, blocks)
        elif verb in ("finish", "cancel") and request in live:
            ids, blocks = live.pop(request)
            if verb == "finish":
                for block, digest in zip(blocks, digests(ids), strict=False):
                    pool.remember(block, digest)
            for block in blocks:
                pool.release(block)
        # Every block is free, cached or held, once; holds are what the requests hold.
        holds = {}
        for _, blocks in live.values():
            for block in blocks:
                holds[block] = holds.get(block, 0) + 1
        assert all(pool.refs(block) == count for block, count in holds.items())
        assert pool.held == len(holds)
        assert pool.cached <= cache_blocks
        assert pool.held + pool.cached + len(pool._free) == pool.blocks - 1
        assert 0 not in holds

    for _, blocks in live.values():
        for block in blocks:
            pool.release(block)
    assert pool.held == 0
