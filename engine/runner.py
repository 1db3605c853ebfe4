"""The only module that calls the model.

The KV cache of all running requests lives in one tensor per layer, one row per request:
`[rows, kv_heads, positions, head_dim]`. A decode step feeds one token for every row at
once, each at its own position, and attends over the positions each row has filled (a
mask hides the rest), so requests of any length share one forward pass. A finished
request's row is refilled by moving the last row into it, so the rows in use are always
the first `batch` ones and the model reads them as a plain view, without copying.
"""

import torch

_INITIAL_POSITIONS = 256
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


class SlotCache:
    """What the model's attention layers call `update()` on: writes each new key and value
    at its row's position and returns the keys and values to attend over."""

    def __init__(self, *, layers: int, kv_heads: int, head_dim: int, dtype, device, max_positions: int):
        self._shape = (kv_heads, head_dim)
        self._layers, self._dtype, self._device = layers, dtype, device
        self.max_positions = max_positions
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._plan = None

    @property
    def rows(self) -> int:
        return self.keys[0].shape[0] if self.keys else 0

    @property
    def positions(self) -> int:
        return self.keys[0].shape[2] if self.keys else 0

    def reserve(self, rows: int, positions: int) -> None:
        """Grows the tensors (doubling, so growth is rare) to hold `rows` x `positions`."""
        if positions > self.max_positions:
            raise ValueError(f"{positions} positions exceed the context window of {self.max_positions}")
        if rows <= self.rows and positions <= self.positions:
            return
        # Each dimension only grows: a short request that adds a row keeps the positions
        # a long one has filled, and a long prompt keeps the rows of the others.
        new_rows = max(rows, min(2 * self.rows, rows + 8)) if rows > self.rows else self.rows
        new_positions = max(positions, 2 * self.positions) if positions > self.positions else self.positions
        new_positions = min(max(new_positions, _INITIAL_POSITIONS), self.max_positions)
        shape = (new_rows, self._shape[0], new_positions, self._shape[1])
        for store in (self.keys, self.values):
            for layer in range(self._layers):
                grown = torch.zeros(shape, dtype=self._dtype, device=self._device)
                if store and len(store) > layer:
                    old = store[layer]
                    grown[: old.shape[0], :, : old.shape[2]] = old
                    store[layer] = grown
                else:
                    store.append(grown)

    def release(self) -> None:
        self.keys, self.values = [], []

    def move_row(self, src: int, dst: int, length: int) -> None:
        for store in (self.keys, self.values):
            for tensor in store:
                tensor[dst, :, :length] = tensor[src, :, :length]

    def plan_prefill(self, first_row: int, count: int, length: int) -> None:
        self._plan = ("prefill", first_row, count, length)

    def plan_decode(self, batch: int, positions: torch.Tensor, attend: int) -> None:
        self._plan = ("decode", batch, positions, attend)

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._plan[0] == "prefill":
            _, first, count, length = self._plan
            keys[first : first + count, :, :length] = key_states
            values[first : first + count, :, :length] = value_states
            return keys[first : first + count, :, :length], values[first : first + count, :, :length]
        _, batch, positions, attend = self._plan
        rows = torch.arange(batch, device=positions.device)
        keys[rows, :, positions] = key_states[:, :, 0]
        values[rows, :, positions] = value_states[:, :, 0]
        return keys[:batch, :, :attend], values[:batch, :, :attend]


class Runner:
    def __init__(self, model, device: torch.device, context_window: int, *, skinny_linears: bool = True):
        self.model = model
        self.device = device
        if skinny_linears:
            use_skinny_linears(model)
        config = model.config
        heads = config.num_attention_heads
        self.cache = SlotCache(
            layers=config.num_hidden_layers,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            dtype=model.dtype,
            device=device,
            max_positions=context_window,
        )

    @torch.inference_mode()
    def prefill(self, first_row: int, prompts: list[list[int]]) -> torch.Tensor:
        """Runs several prompts at once into rows first_row, first_row + 1, ...; returns the
        logits for the token after each prompt, one row each.

        Shorter prompts are padded at the end. The padding's keys are never attended to:
        a row's mask stops at its own length, and its first decode step overwrites them.
        """
        count, longest = len(prompts), max(len(p) for p in prompts)
        self.cache.reserve(first_row + count, longest + 1)
        self.cache.plan_prefill(first_row, count, longest)
        ids = torch.zeros(count, longest, dtype=torch.long, device=self.device)
        for index, prompt in enumerate(prompts):
            ids[index, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        positions = torch.arange(longest, device=self.device)
        causal = positions[None, :] <= positions[:, None]
        mask = causal[None, :, :] & (positions[None, None, :] < lengths[:, None, None])
        hidden = self.model.get_decoder()(
            input_ids=ids,
            position_ids=positions.expand(count, longest),
            attention_mask=mask[:, None],
            cache=self.cache,
            use_cache=True,
        ).last_hidden_state
        # Only each prompt's last position needs logits: the vocabulary projection of
        # every prompt position would cost more than the rest of the prefill.
        last = hidden[torch.arange(count, device=self.device), lengths - 1]
        return self.model.get_output_embeddings()(last)

    @torch.inference_mode()
    def decode(self, tokens: list[int], lengths: list[int]) -> torch.Tensor:
        """One token for each of the first len(tokens) rows, row i at position lengths[i];
        returns their next-token logits, one row each."""
        batch = len(tokens)
        positions = torch.tensor(lengths, dtype=torch.long, device=self.device)
        attend = max(lengths) + 1
        self.cache.reserve(batch, attend)
        self.cache.plan_decode(batch, positions, attend)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(1)
        mask = torch.arange(attend, device=self.device).unsqueeze(0) <= positions.unsqueeze(1)
        out = self.model(
            input_ids=ids,
            position_ids=positions.unsqueeze(1),
            attention_mask=mask[:, None, None, :],
            cache=self.cache,
            use_cache=True,
        )
        return out.logits[:, -1]
