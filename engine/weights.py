"""Linear layers whose weights are held in fewer bits, for the CPU.

A decode step multiplies every weight of the model by a few rows, so on the CPU its time is
mostly the time to read the weights (docs/performance.md). These layers keep the model's
arithmetic in float32 and change only how the linear weights are held and multiplied,
through FBGEMM, the CPU matrix library that torch ships:

- `float16`: weights rounded to float16 and multiplied in float32 (`linear_dynamic_fp16`).
  Half the bytes to read; each output is a float32 sum, so a row's result depends only on
  that row, whatever else is in the batch.
- `int8`: weights as int8 with one scale per output channel (a quarter of the bytes),
  multiplied by rows quantized as they come in (`linear_dynamic`). On AVX2, FBGEMM sums
  pairs of 8-bit products in 16 bits, which saturate unless the rows keep to 7 bits
  (`reduce_range`); and a row quantized whole to 7 bits loses its small features beside
  its large ones (perplexity +14% on the shipped passage, docs/performance.md). So each
  row goes in twice: as itself, and as what 7 bits of it missed, scaled up; the two
  products add up to the row's product at about 14 bits (perplexity +0.4%, what the int8
  weights alone cost). FBGEMM also quantizes its input with one scale for the whole
  tensor, which would make a row's result depend on its batch-mates; so each row is
  divided by its own largest magnitude and gets two more features, +1 and -1 (whose
  weights are zero): every row then spans exactly [-1, 1], the scale is the same for any
  batch, and a row's result depends on that row alone.

Both are made from a float32 model after it is loaded (and after a LoRA adapter is merged
into it), in place: `pack_weights(model, "int8")`, which packs the token embeddings too
(`PackedEmbedding`). Sibling layers that read the same input (a layer's q, k and v
projections; its MLP's gate and up projections) are packed as one wider matrix
(`PackedSiblings`), so a step makes 121 product calls instead of 211.
"""

import itertools
import warnings

import torch

WEIGHT_FORMATS = ("float16", "int8")
# The ops themselves, looked up once: a decode step calls them 211 times, and torch.ops'
# attribute lookup per call cost more than a millisecond a step.
_FLOAT16_PRODUCT = torch.ops.quantized.linear_dynamic_fp16.default
_INT8_PRODUCT = torch.ops.quantized.linear_dynamic.default
# Sibling linear layers that a parent module calls one after the other on the same input.
SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class PackedLinear(torch.nn.Module):
    """A linear layer whose weight lives in an FBGEMM packed form; float32 in and out."""

    def __init__(self, linear: torch.nn.Linear, weights: str):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weights = weights
        weight = linear.weight.detach().float()
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        if weights == "float16":
            # The bias is packed with the weights and added by FBGEMM.
            self._packed = torch.ops.quantized.linear_prepack_fp16(weight, bias)
            self.packed_bytes = weight.numel() * 2 + (0 if bias is None else bias.numel() * 4)
            self.register_buffer("bias", None, persistent=False)
        elif weights == "int8":
            # torch 2.13 warns that quantized tensors, which this packing takes, will go: the
            # int8 format goes with them unless FBGEMM's packing takes plain tensors by then.
            # Two zero columns for the +1 / -1 features each row gets (module docstring).
            widened = torch.cat([weight, weight.new_zeros(weight.shape[0], 2)], dim=1)
            scales = (widened.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
            zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
            with warnings.catch_warnings():
                # Quantized tensors are deprecated as a public type; FBGEMM's packing still takes one.
                warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
                quantized = torch.quantize_per_channel(widened, scales, zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(quantized, None)
            self.packed_bytes = widened.numel() + scales.numel() * 4
            self.register_buffer("bias", bias, persistent=False)
            self.register_buffer("_span", torch.tensor([1.0, -1.0]), persistent=False)
        else:
            raise ValueError(f"Unknown weight format {weights!r}; use {', '.join(WEIGHT_FORMATS)}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights == "float16":
            # Any leading dimensions; one call, nothing around it: this is most of a decode step.
            return _FLOAT16_PRODUCT(x, self._packed)
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        count = rows.shape[0]
        # With reduce_range FBGEMM's grid over [-1, 1] is k / 63.5, k from -63 to 63 at least
        # (7 bits, so that its 16-bit sums of pairs of products cannot saturate on AVX2);
        # each row's largest magnitude goes to 63 / 63.5, on the grid.
        peak = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-30) * (63.5 / 63)
        high = rows / peak
        # What the grid misses of `high` (within half a step), scaled back up to [-1, 1].
        missed = (high - torch.round(high * 63.5) / 63.5) * 126
        both = torch.cat([torch.cat([high, missed]), self._span.expand(2 * count, 2)], dim=1)
        both = _INT8_PRODUCT(both, self._packed, True)
        out = (both[:count] + both[count:] / 126) * peak
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weights={self.weights}"


class PackedSiblings:
    """Sibling linear layers packed as one PackedLinear of their weights stacked, for a
    parent that calls each sibling on the same input: the first call makes the whole
    product, and the others take their columns of it.

    The last product is kept, with its input, only until every sibling has had its part;
    a sibling called with another input (or called again) gets a product of its own, so
    the result never depends on the order of the calls. The three are swapped in one
    assignment, so threads sharing the model (Inspect's) never mix two inputs. A plain
    object, not a module: a step calls it 121 times, and a module's attribute writes and
    submodule reads cost about a millisecond a step (docs/performance.md).
    """

    def __init__(self, linears: list[torch.nn.Linear], weights: str):
        out_features = [linear.out_features for linear in linears]
        # Made on the meta device, then given the stacked weights: no initialization to undo.
        joined = torch.nn.Linear(linears[0].in_features, sum(out_features), bias=False, device="meta")
        joined.weight = torch.nn.Parameter(torch.cat([linear.weight.detach().float() for linear in linears]))
        if any(linear.bias is not None for linear in linears):
            biases = [
                torch.zeros(linear.out_features) if linear.bias is None else linear.bias.detach().float()
                for linear in linears
            ]
            joined.bias = torch.nn.Parameter(torch.cat(biases))
        self.packed = PackedLinear(joined, weights)
        ends = list(itertools.accumulate(out_features))
        self.bounds = list(zip([0, *ends[:-1]], ends, strict=True))
        # (input, product, the parts not yet taken) of the last call, or None.
        self._last: tuple[torch.Tensor, torch.Tensor, frozenset[int]] | None = None

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        last = self._last
        if last is not None and last[0] is x and index in last[2]:
            _, product, waiting = last
        else:
            product, waiting = self.packed.forward(x), frozenset(range(len(self.bounds)))
        waiting = waiting - {index}
        self._last = (x, product, waiting) if waiting else None
        start, end = self.bounds[index]
        return product[..., start:end]


class PackedPart(torch.nn.Module):
    """One sibling of a PackedSiblings, in the place of the linear layer it was. The packed
    layer is a submodule of every part, so that the model's modules (and weight_bytes)
    find it."""

    def __init__(self, siblings: PackedSiblings, index: int):
        super().__init__()
        self.packed = siblings.packed
        self.siblings, self.index = siblings, index
        self.in_features = siblings.packed.in_features
        start, end = siblings.bounds[index]
        self.out_features = end - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.siblings.part(x, self.index)

    def extra_repr(self) -> str:
        return f"part={self.index}"


class PackedEmbedding(torch.nn.Module):
    """Token embeddings held like the linear weights: in float16, or in int8 with one scale
    per token; a lookup gives float32 rows. A step looks up one row per token, so this
    saves memory, not time: SmolLM2's float32 table is 113 MB, half that in float16 and a
    quarter in int8."""

    def __init__(self, embedding: torch.nn.Embedding, weights: str):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        table = embedding.weight.detach().float()
        if weights == "float16":
            self.register_buffer("_table", table.half(), persistent=False)
            self.register_buffer("_scales", None, persistent=False)
        elif weights == "int8":
            scales = (table.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
            self.register_buffer("_table", torch.round(table / scales).to(torch.int8), persistent=False)
            self.register_buffer("_scales", scales, persistent=False)
        else:
            raise ValueError(f"Unknown weight format {weights!r}; use {', '.join(WEIGHT_FORMATS)}.")

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self._table[ids].float()
        return rows if self._scales is None else rows * self._scales[ids]

    @property
    def weight(self) -> torch.Tensor:
        """The whole table in float32, made on each call (Inspect's neighbours read it)."""
        return self.forward(torch.arange(self.num_embeddings))


def pack_weights(model, weights: str) -> int:
    """Replaces every nn.Linear of a CPU model with a PackedLinear of `weights`, and its
    token embeddings with a PackedEmbedding; returns how many linear layers. The float32
    weights are dropped (a language-model head tied to the token embeddings gets a packed
    copy of its own)."""
    if weights not in WEIGHT_FORMATS:
        raise ValueError(f"Unknown weight format {weights!r}; use {', '.join(WEIGHT_FORMATS)}.")
    replaced = 0
    for parent in list(model.modules()):
        for names in SIBLINGS:
            linears = [getattr(parent, name, None) for name in names]
            if _packable_together(linears):
                siblings = PackedSiblings(linears, weights)
                for index, name in enumerate(names):
                    setattr(parent, name, PackedPart(siblings, index))
                replaced += len(names)
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and child.weight.device.type == "cpu":
                setattr(parent, name, PackedLinear(child, weights))
                replaced += 1
    embeddings = model.get_input_embeddings()
    if type(embeddings) is torch.nn.Embedding and embeddings.weight.device.type == "cpu":
        model.set_input_embeddings(PackedEmbedding(embeddings, weights))
    return replaced


def _packable_together(linears: list) -> bool:
    """Whether a parent's named siblings are all CPU linear layers reading one width of input."""
    return all(isinstance(linear, torch.nn.Linear) and linear.weight.device.type == "cpu" for linear in linears) and (
        len({linear.in_features for linear in linears}) == 1
    )


def weight_bytes(model) -> int:
    """The bytes the model's weights take: its parameters and buffers, and the packed
    weights of its PackedLinear layers (which torch does not count as either)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    packed = sum(module.packed_bytes for module in model.modules() if isinstance(module, PackedLinear))
    return packed + sum(t.numel() * t.element_size() for t in tensors.values())
