"""The only module that calls the model.

The KV cache is paged: one tensor per layer holds every request's keys (and one its
values) in blocks of BLOCK_SIZE positions, `[blocks x BLOCK_SIZE, kv_heads, head_dim]`,
and each request names its blocks in a block table (engine/blocks.py).

A forward pass runs rows of any lengths together, packed: every row's new tokens go in
one sequence, each at its own row's position, so the layers' weights are read once for
all of them, and a decode step's rows (one token each) ride along with a piece of a
prompt being read (many) at little cost. Only attention is by row: the keys and values
of the new tokens are written into their rows' blocks, and each row reads its blocks back
in order (a gather). Rows of one token are read in groups of similar length, padded
within the group with a mask, not to the longest of all: a group ends where a row is less
than half as long as its first. One 6,300-token story then costs the short ones beside
it little (padded together, a step of 32 rows took 17 times as long; docs/performance.md).
A prompt piece is its own group. `grouped_attention`, the model's attention function,
runs them group by group.
"""

from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from engine.blocks import blocks_for
from engine.config import BLOCK_SIZE

# Blocks the cache makes usable at first, and at least at each step after.
_INITIAL_BLOCKS = 64
# Between these row counts, SkinnyLinear's product is the faster one on the CPU.
_SKINNY_ROWS = (2, 64)


class SkinnyLinear(torch.nn.Linear):
    """A linear layer that multiplies a few rows as weight @ rows^T.

    For 2 to 64 rows (a decode step's batch), MKL computes `weight @ x.T` in float32
    1.2 to 1.7 times faster than `x @ weight.T`, which is what `nn.Linear` asks for
    (docs/performance.md); for one row and for long prefills `nn.Linear` is as fast or faster.
    The result is the same product, up to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.dim() >= 2 else 1
        if not _SKINNY_ROWS[0] <= rows <= _SKINNY_ROWS[1]:
            return super().forward(x)
        out = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def use_skinny_linears(model) -> None:
    """Makes every plain nn.Linear of a CPU float32 model a SkinnyLinear, in place."""
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.device.type == "cpu":
            if module.weight.dtype == torch.float32:
                module.__class__ = SkinnyLinear


@dataclass
class Group:
    """Rows whose attention runs together: their new tokens are `tokens` of the packed
    sequence, `width` per row, and they attend over the slots `read` ([rows, span]) where
    `mask` ([rows, 1, width, span]) allows."""

    tokens: slice
    width: int
    read: torch.Tensor
    mask: torch.Tensor


class Groups(list):
    """One layer's keys (or values) for a forward pass: a tensor per Group, [rows,
    kv_heads, span, head_dim]."""


def grouped_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention group by group when the cache hands out Groups; plain SDPA otherwise (the
    model used outside the engine, as Inspect and training do)."""
    if not isinstance(key, Groups):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    # query: [1, heads, tokens, dim], all rows' new tokens packed in one sequence.
    for group, keys, values in zip(key.groups, key, value, strict=True):
        rows, heads, dim = group.read.shape[0], query.shape[1], query.shape[3]
        # [heads, rows x width, dim] -> [rows, heads, width, dim]
        # Contiguous: SDPA's fast CPU kernel wants it, and takes its slow path otherwise.
        rows_query = query[0, :, group.tokens].reshape(heads, rows, group.width, dim).transpose(0, 1).contiguous()
        if group.width == 1:
            output, _ = sdpa_attention_forward(module, rows_query, keys, values, group.mask, **kwargs)
        else:
            output = _piece_attention(rows_query, keys, values, group.mask, kwargs.get("scaling"))
        outputs.append(output.reshape(rows * group.width, heads, dim))  # [rows, width, heads, dim]
    return torch.cat(outputs).unsqueeze(0), None


def _piece_attention(query, keys, values, mask, scaling):
    """A prompt piece's attention, [rows, width, heads, dim]: the query heads that share a
    key head (grouped-query attention) are stacked on it as more queries, instead of
    copying its keys and values for each (as transformers does for many queries): on the
    CPU that copy was a third of what a short piece cost at position 2,700."""
    rows, heads, width, dim = query.shape
    kv_heads, span = keys.shape[1], keys.shape[2]
    shared = heads // kv_heads
    stacked = query.reshape(rows, kv_heads, shared * width, dim)
    stacked_mask = mask[:, :, None].expand(rows, 1, shared, width, span).reshape(rows, 1, shared * width, span)
    output = torch.nn.functional.scaled_dot_product_attention(
        stacked, keys, values, attn_mask=stacked_mask, scale=scaling
    )
    return output.reshape(rows, heads, width, dim).transpose(1, 2)


GROUPED_ATTENTION = "storyteller_grouped"
_NO_MASK = torch.ones(1, 1, 1, 1, dtype=torch.bool)
AttentionInterface.register(GROUPED_ATTENTION, grouped_attention)


def span_groups(spans: list[int]) -> list[tuple[int, int]]:
    """(rows, span) of each group of rows, for spans sorted longest first: a group ends
    where a row is less than half as long as its first."""
    groups: list[tuple[int, int]] = []
    for span in spans:
        if groups and 2 * span >= groups[-1][1]:
            groups[-1] = (groups[-1][0] + 1, groups[-1][1])
        else:
            groups.append((1, span))
    return groups


class PagedCache:
    """What the model's attention layers call `update()` on: writes each new key and value
    into its block and returns the keys and values each row attends over."""

    def __init__(self, *, layers: int, kv_heads: int, head_dim: int, dtype, device, blocks: int):
        self._shape = (kv_heads, head_dim)
        self._layers, self._dtype, self._device = layers, dtype, torch.device(device)
        self.max_blocks = blocks
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        # Block ids below this one are usable: allocated and zeroed.
        self.blocks = 0
        self._plan: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def reserve(self, blocks: int) -> None:
        """Makes the block ids below `blocks` usable.

        On the CPU the tensors are taken whole at first, as address space that the OS backs
        with memory only where it is written, and blocks are zeroed in steps as ids go
        higher: nothing is copied, so growing never stalls a step (doubling and copying 1.5
        GB took about a second). CUDA memory is taken as soon as it is allocated, so there
        the tensors grow by doubling instead.
        """
        if blocks <= self.blocks:
            return
        if self._device.type == "cpu":
            if not self.keys:
                shape = (self.max_blocks * BLOCK_SIZE, *self._shape)
                for store in (self.keys, self.values):
                    store.extend(torch.empty(shape, dtype=self._dtype) for _ in range(self._layers))
            grown = min(max(blocks, self.blocks + _INITIAL_BLOCKS), self.max_blocks)
            for tensor in self.keys + self.values:
                # Zeros, not whatever was there: padding reads block 0, and a row's last block
                # is read past what it wrote, masked; a NaN there would survive the mask (0 x NaN).
                tensor[self.blocks * BLOCK_SIZE : grown * BLOCK_SIZE].zero_()
        else:
            grown = min(max(blocks, 2 * self.blocks, _INITIAL_BLOCKS), self.max_blocks)
            shape = (grown * BLOCK_SIZE, *self._shape)
            for store in (self.keys, self.values):
                for layer in range(self._layers):
                    tensor = torch.zeros(shape, dtype=self._dtype, device=self._device)
                    if len(store) > layer:
                        tensor[: store[layer].shape[0]] = store[layer]
                        store[layer] = tensor
                    else:
                        store.append(tensor)
        self.blocks = grown

    def plan(self, write: torch.Tensor, groups: list[Group]) -> None:
        """The next forward pass writes its new token i at slot write[i]; each group then
        reads its slots back."""
        self._plan = (write, groups)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        write, groups = self._plan
        heads, dim = key_states.shape[1], key_states.shape[3]
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # [1, heads, tokens, dim] -> [tokens, heads, dim], the cache's own layout.
        keys[write] = key_states[0].transpose(0, 1)
        values[write] = value_states[0].transpose(0, 1)
        gathered = Groups(), Groups()
        for group in groups:
            rows, flat = group.read.shape[0], group.read.reshape(-1)
            for out, store in zip(gathered, (keys, values), strict=True):
                # [rows x positions, heads, dim] -> [rows, heads, positions, dim], a view.
                # (Gathering whole slots, heads together, is 9 times faster than by head.)
                out.append(store.index_select(0, flat).view(rows, -1, heads, dim).transpose(1, 2))
        gathered[0].groups = groups
        return gathered


class Runner:
    def __init__(self, model, device: torch.device, context_window: int, *, blocks: int, skinny_linears: bool = True):
        self.model = model
        self.device = device
        self.context_window = context_window
        if skinny_linears:
            use_skinny_linears(model)
        model.config._attn_implementation = GROUPED_ATTENTION
        config = model.config
        heads = config.num_attention_heads
        self.cache = PagedCache(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            dtype=model.dtype,
            device=device,
            blocks=blocks,
        )
        self._offsets = torch.arange(BLOCK_SIZE, device=device)

    @torch.inference_mode()
    def run(self, tables: list[list[int]], starts: list[int], tokens: list[list[int]]) -> torch.Tensor:
        """Feeds row r's `tokens[r]` at positions starts[r], starts[r] + 1, ..., its keys
        and values going into the blocks `tables[r]`, which hold its earlier positions;
        returns the next-token logits after each row's last token, one row each."""
        device = self.device
        ends = [start + len(row_tokens) for start, row_tokens in zip(starts, tokens, strict=True)]
        if max(ends) > self.context_window:
            raise ValueError(f"{max(ends)} positions exceed the context window of {self.context_window}")
        # Rows of one token first, longest first, so that each group is a run of rows.
        order = sorted(range(len(tokens)), key=lambda row: (len(tokens[row]) > 1, -ends[row]))
        tables, starts, tokens, ends = ([values[row] for row in order] for values in (tables, starts, tokens, ends))
        used = [row_table[: blocks_for(end)] for row_table, end in zip(tables, ends, strict=True)]
        self.cache.reserve(max(max(u) for u in used) + 1)
        # Each row's slots, position by position: block table x BLOCK_SIZE + offset.
        span = max(ends)
        table = torch.tensor([u + [0] * (blocks_for(span) - len(u)) for u in used], dtype=torch.long, device=device)
        slots = (table[:, :, None] * BLOCK_SIZE + self._offsets).view(len(tokens), -1)
        ids = torch.tensor([t for row in tokens for t in row], dtype=torch.long, device=device)
        positions = torch.tensor(
            [p for start, row in zip(starts, tokens, strict=True) for p in range(start, start + len(row))],
            device=device,
        )
        write = torch.cat([slots[row, start:end] for row, (start, end) in enumerate(zip(starts, ends, strict=True))])
        groups, first_token, row = [], 0, 0
        singles = sum(1 for t in tokens if len(t) == 1)
        for rows, group_span in span_groups(ends[:singles]):
            end_positions = torch.tensor(ends[row : row + rows], device=device)
            mask = torch.arange(group_span, device=device)[None, :] < end_positions[:, None]
            read = slots[row : row + rows, :group_span]
            groups.append(Group(slice(first_token, first_token + rows), 1, read, mask[:, None, None, :]))
            first_token, row = first_token + rows, row + rows
        for row in range(singles, len(tokens)):
            width, start, end = len(tokens[row]), starts[row], ends[row]
            query_positions = torch.arange(start, end, device=device)
            mask = torch.arange(end, device=device)[None, :] <= query_positions[:, None]
            read = slots[row : row + 1, :end]
            groups.append(Group(slice(first_token, first_token + width), width, read, mask[None, None]))
            first_token += width
        self.cache.plan(write, groups)
        hidden = self.model.get_decoder()(
            input_ids=ids[None],
            position_ids=positions[None],
            # Unused (each group brings its own) but given, so the model builds none.
            attention_mask=_NO_MASK,
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state[0]
        # Only each row's last token needs logits: the vocabulary projection of every
        # prompt position would cost more than the rest of the pass.
        last = torch.tensor(ends, device=device) - torch.tensor(starts, device=device)
        last = torch.cumsum(last, 0) - 1
        logits = self.model.get_output_embeddings()(hidden[last])
        # Back in the caller's order.
        back = torch.empty(len(order), dtype=torch.long, device=device)
        back[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
        return logits[back]
