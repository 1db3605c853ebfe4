"""The KV cache's memory, counted in blocks of BLOCK_SIZE token positions; no torch.

Every request holds a list of block ids, its block table: its position p lives in block
table[p // BLOCK_SIZE], at offset p % BLOCK_SIZE. Requests hold only the blocks their own
length needs, so memory grows with the sum of the live lengths, not with the longest.

A full block is also known by its content: a digest of every token id from the start of
the sequence to the end of that block (chained, so that a block's digest names its whole
prefix). A new request whose tokens start like an earlier one takes the earlier blocks
instead of computing them again, and blocks are shared, counted by references. A block
no request holds stays cached, least recently used first out, within a budget of
`cache_blocks`; a block without a digest is free as soon as nobody holds it.

Block 0 is never handed out: the runner points a short row's padding at it.
"""

import hashlib
import heapq
from array import array
from collections import OrderedDict

from engine.config import BLOCK_SIZE


class OutOfBlocks(Exception):
    """Every block is held by a running request; the scheduler's limits should prevent it."""


def blocks_for(positions: int) -> int:
    """How many blocks hold this many token positions."""
    return -(-positions // BLOCK_SIZE)


def digests(ids, *, after: bytes = b"", start: int = 0) -> list[bytes]:
    """The digest of each full block of `ids`, from block `start` on; `after` is the digest
    of block start - 1 (empty for the first block)."""
    out, previous = [], after
    for first in range(start * BLOCK_SIZE, len(ids) - BLOCK_SIZE + 1, BLOCK_SIZE):
        tokens = array("q", ids[first : first + BLOCK_SIZE]).tobytes()
        previous = hashlib.blake2b(previous + tokens, digest_size=16).digest()
        out.append(previous)
    return out


class BlockPool:
    def __init__(self, *, blocks: int, cache_blocks: int):
        if blocks < 2 or cache_blocks < 0:
            raise ValueError("a block pool needs at least 2 blocks and a cache budget of 0 or more")
        self.blocks = blocks
        self.cache_blocks = cache_blocks
        self._refs = [0] * blocks
        # Never handed out or given back, lowest first, so that the blocks in use (and the
        # memory the runner has touched) stay at the low end.
        self._free = list(range(1, blocks))
        # Held by nobody but still known by their digest: least recently used first.
        self._cached: OrderedDict[int, None] = OrderedDict()
        self._digest_of: dict[int, bytes] = {}
        self._by_digest: dict[bytes, int] = {}
        # Prompt tokens looked up, and found cached, since the start.
        self.prompt_tokens = 0
        self.found_tokens = 0
        self._highest = 1

    # -- what the engine asks ------------------------------------------------------------

    @property
    def held(self) -> int:
        """Blocks some request holds."""
        return self.blocks - 1 - len(self._free) - len(self._cached)

    @property
    def cached(self) -> int:
        """Blocks held by nobody, kept for a prefix that may come again."""
        return len(self._cached)

    @property
    def highest(self) -> int:
        """One past the highest block id ever handed out: the memory the runner must have."""
        return self._highest

    def match(self, block_digests: list[bytes]) -> list[int]:
        """Takes the longest run of cached blocks with these digests, from the first; the
        caller holds them (release() each)."""
        taken = []
        for digest in block_digests:
            block = self._by_digest.get(digest)
            if block is None:
                break
            self._take(block)
            taken.append(block)
        return taken

    def cached_run(self, block_digests: list[bytes]) -> int:
        """How many of these blocks, from the first, are cached now; takes none. Read without
        the engine loop's lock (a preview can bear a block's difference)."""
        count = 0
        for digest in block_digests:
            if digest not in self._by_digest:
                break
            count += 1
        return count

    def record_lookup(self, *, prompt_tokens: int, found_tokens: int) -> None:
        """Counts one request's prompt for the hit rate."""
        self.prompt_tokens += prompt_tokens
        self.found_tokens += found_tokens

    def allocate(self) -> int:
        """A block for new keys and values, held by the caller: a free one, else the least
        recently used cached one."""
        if self._free:
            block = heapq.heappop(self._free)
        elif self._cached:
            block, _ = self._cached.popitem(last=False)
            self._forget(block)
        else:
            raise OutOfBlocks(f"all {self.blocks - 1} KV cache blocks are in use")
        self._refs[block] = 1
        self._highest = max(self._highest, block + 1)
        return block

    def remember(self, block: int, digest: bytes) -> None:
        """Makes a full, held block findable by its digest, unless another already is; with
        no cache budget, nothing is ever found."""
        if not self.cache_blocks or digest in self._by_digest or block in self._digest_of:
            return
        self._digest_of[block] = digest
        self._by_digest[digest] = block

    def release(self, block: int) -> None:
        """Lets go of one hold on a block; at the last it is cached, or free."""
        if self._refs[block] <= 0:
            raise ValueError(f"block {block} is released more often than it was held")
        self._refs[block] -= 1
        if self._refs[block]:
            return
        if block in self._digest_of and self.cache_blocks:
            self._cached[block] = None
            while len(self._cached) > self.cache_blocks:
                oldest, _ = self._cached.popitem(last=False)
                self._forget(oldest)
                heapq.heappush(self._free, oldest)
        else:
            self._forget(block)
            heapq.heappush(self._free, block)

    def refs(self, block: int) -> int:
        return self._refs[block]

    # -- inside --------------------------------------------------------------------------

    def _take(self, block: int) -> None:
        if self._refs[block] == 0:
            del self._cached[block]
        self._refs[block] += 1

    def _forget(self, block: int) -> None:
        digest = self._digest_of.pop(block, None)
        if digest is not None:
            del self._by_digest[digest]
