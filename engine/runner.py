"""The only module that calls the model.

The KV cache is paged: one tensor per layer holds every request's keys (and one its
values) in blocks of BLOCK_SIZE positions, `[kv_heads, blocks x BLOCK_SIZE, head_dim]`,
and each request names its blocks in a block table (engine/blocks.py). A forward pass
runs rows of any lengths together: each row feeds its new tokens at its own positions,
they are written into its blocks, and its attention reads its blocks back in order
(a gather), padded with a mask that hides what is not its own. A decode step is rows of
one token; reading a prompt is rows of many.

Rows are padded within groups of similar length, not to the longest of all: the rows are
sorted by length, a group ends where a row is less than half as long as the group's
first, and attention runs group by group (`grouped_attention`, the model's attention
function). One 6,000-token story then costs the short ones beside it little: padded
together, a step of 32 rows took 20 times as long.
"""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from engine.blocks import BLOCK_SIZE, blocks_for

# Blocks the cache holds memory for at first; it doubles as block ids go higher.
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


class Groups(list):
    """One layer's keys (or values) for a forward pass: a tensor per group of rows."""


def grouped_attention(module, query, key, value, attention_mask, **kwargs):
    """Attention group by group when the cache hands out Groups; plain SDPA otherwise (the
    model used outside the engine, as Inspect and training do)."""
    if not isinstance(key, Groups):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs, first = [], 0
    for keys, values in zip(key, value, strict=True):
        rows, span = keys.shape[0], keys.shape[2]
        mask = attention_mask[first : first + rows, ..., :span]
        output, _ = sdpa_attention_forward(module, query[first : first + rows], keys, values, mask, **kwargs)
        outputs.append(output)
        first += rows
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0], None


GROUPED_ATTENTION = "storyteller_grouped"
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
        self._layers, self._dtype, self._device = layers, dtype, device
        self.max_blocks = blocks
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._plan: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    @property
    def blocks(self) -> int:
        return self.keys[0].shape[1] // BLOCK_SIZE if self.keys else 0

    def reserve(self, blocks: int) -> None:
        """Grows the tensors (doubling, so growth is rare) to hold block ids below `blocks`."""
        if blocks <= self.blocks:
            return
        grown_blocks = min(max(blocks, 2 * self.blocks, _INITIAL_BLOCKS), self.max_blocks)
        shape = (self._shape[0], grown_blocks * BLOCK_SIZE, self._shape[1])
        for store in (self.keys, self.values):
            for layer in range(self._layers):
                # Zeros, not empty: padding reads block 0, and a NaN there would survive
                # the mask (0 x NaN is NaN).
                grown = torch.zeros(shape, dtype=self._dtype, device=self._device)
                if len(store) > layer:
                    grown[:, : store[layer].shape[1]] = store[layer]
                    store[layer] = grown
                else:
                    store.append(grown)

    def plan(self, write: torch.Tensor, reads: list[torch.Tensor]) -> None:
        """The next forward pass writes row r's new token i at slot write[r, i]; each group
        of rows then reads its slots back, reads[g][row in group], in order."""
        self._plan = (write.reshape(-1), reads)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        write, reads = self._plan
        heads, dim = key_states.shape[1], key_states.shape[3]
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # [rows, heads, new, dim] -> [heads, rows x new, dim], the cache's own layout.
        keys[:, write] = key_states.transpose(0, 1).reshape(heads, -1, dim)
        values[:, write] = value_states.transpose(0, 1).reshape(heads, -1, dim)
        gathered = Groups(), Groups()
        for read in reads:
            rows, flat = read.shape[0], read.reshape(-1)
            for out, store in zip(gathered, (keys, values), strict=True):
                # [heads, rows x positions, dim] -> [rows, heads, positions, dim], a view.
                out.append(store.index_select(1, flat).view(heads, rows, -1, dim).transpose(0, 1))
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
        returns the next-token logits after each row's last token, one row each.

        Rows with fewer tokens than the most are padded at the end. A padding token sees
        what its row's last token sees and writes into block 0, which nobody reads unmasked.
        """
        device = self.device
        ends = [start + len(row_tokens) for start, row_tokens in zip(starts, tokens, strict=True)]
        if max(ends) > self.context_window:
            raise ValueError(f"{max(ends)} positions exceed the context window of {self.context_window}")
        # Longest first, so that each group of similar length is a run of rows.
        order = sorted(range(len(tokens)), key=lambda row: -ends[row])
        tables, starts, tokens, ends = ([values[row] for row in order] for values in (tables, starts, tokens, ends))
        rows, span = len(tokens), ends[0]
        counts = torch.tensor([len(t) for t in tokens], device=device)
        width = int(counts.max())
        ids = torch.tensor([t + [0] * (width - len(t)) for t in tokens], dtype=torch.long, device=device)
        # Each row's slots, position by position: block table x BLOCK_SIZE + offset.
        blocks = blocks_for(span)
        used = [row_table[: blocks_for(end)] for row_table, end in zip(tables, ends, strict=True)]
        self.cache.reserve(max(max(u) for u in used) + 1)
        table = torch.tensor([u + [0] * (blocks - len(u)) for u in used], dtype=torch.long, device=device)
        slots = (table[:, :, None] * BLOCK_SIZE + self._offsets).view(rows, -1)[:, :span]
        steps = torch.arange(width, device=device)
        real = steps[None, :] < counts[:, None]
        # A padding token stands where its row's last token stands.
        positions = torch.tensor(starts, device=device)[:, None] + torch.minimum(steps[None, :], counts[:, None] - 1)
        write = torch.where(real, slots.gather(1, positions), 0)
        reads, first = [], 0
        for group_rows, group_span in span_groups(ends):
            reads.append(slots[first : first + group_rows, :group_span])
            first += group_rows
        self.cache.plan(write, reads)
        mask = torch.arange(span, device=device)[None, None, :] <= positions[:, :, None]
        hidden = self.model.get_decoder()(
            input_ids=ids,
            position_ids=positions,
            attention_mask=mask[:, None],
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state
        # Only each row's last token needs logits: the vocabulary projection of every
        # prompt position would cost more than the rest of the pass.
        last = hidden[torch.arange(rows, device=device), counts - 1]
        logits = self.model.get_output_embeddings()(last)
        # Back in the caller's order.
        back = torch.empty(rows, dtype=torch.long, device=device)
        back[torch.tensor(order, device=device)] = torch.arange(rows, device=device)
        return logits[back]
