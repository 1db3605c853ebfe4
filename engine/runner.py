"""The only module that calls the model.

The KV cache is paged: one tensor per layer holds every request's keys (and one its
values) in blocks of BLOCK_SIZE positions, `[kv_heads, blocks x BLOCK_SIZE, head_dim]`,
and each request names its blocks in a block table (engine/blocks.py). A forward pass
runs rows of any lengths together: each row feeds its new tokens at its own positions,
they are written into its blocks, and its attention reads its blocks back in order
(a gather), padded to the longest row with a mask that hides what is not its own. A
decode step is rows of one token; reading a prompt is rows of many.
"""

import torch

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


class PagedCache:
    """What the model's attention layers call `update()` on: writes each new key and value
    into its block and returns the keys and values each row attends over."""

    def __init__(self, *, layers: int, kv_heads: int, head_dim: int, dtype, device, blocks: int):
        self._shape = (kv_heads, head_dim)
        self._layers, self._dtype, self._device = layers, dtype, device
        self.max_blocks = blocks
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._plan: tuple[torch.Tensor, torch.Tensor] | None = None

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

    def plan(self, write: torch.Tensor, read: torch.Tensor) -> None:
        """The next forward pass writes row r's new token i at slot write[r, i] and reads
        the slots read[r] back, in order."""
        self._plan = (write.reshape(-1), read)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        write, read = self._plan
        rows, heads, _, dim = key_states.shape
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        # [rows, heads, new, dim] -> [heads, rows x new, dim], the cache's own layout.
        keys[:, write] = key_states.transpose(0, 1).reshape(heads, -1, dim)
        values[:, write] = value_states.transpose(0, 1).reshape(heads, -1, dim)
        flat = read.reshape(-1)
        # [heads, rows x positions, dim] -> [rows, heads, positions, dim], a view.
        gathered = (store.index_select(1, flat).view(heads, rows, -1, dim).transpose(0, 1) for store in (keys, values))
        return tuple(gathered)


class Runner:
    def __init__(self, model, device: torch.device, context_window: int, *, blocks: int, skinny_linears: bool = True):
        self.model = model
        self.device = device
        self.context_window = context_window
        if skinny_linears:
            use_skinny_linears(model)
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

        Rows shorter than the longest are padded at the end. A padding token sees what its
        row's last token sees and writes into block 0, which nobody reads unmasked.
        """
        device = self.device
        rows = len(tokens)
        counts = torch.tensor([len(t) for t in tokens], device=device)
        width = int(counts.max())
        start = torch.tensor(starts, device=device)
        ends = [s + len(t) for s, t in zip(starts, tokens, strict=True)]
        span = max(ends)
        if span > self.context_window:
            raise ValueError(f"{span} positions exceed the context window of {self.context_window}")
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
        positions = start[:, None] + torch.minimum(steps[None, :], counts[:, None] - 1)
        write = torch.where(real, slots.gather(1, positions), 0)
        self.cache.plan(write, slots)
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
        return self.model.get_output_embeddings()(last)
