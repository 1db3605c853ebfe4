"""Linear weights held in float16 or int8 (engine/weights.py): the same products within
the format's precision, a row's result independent of its batch, and the engine's text
unchanged where the model is sure of its next token."""

import pytest
import torch

from engine import loader
from engine.config import EngineConfig, ModelSpec, SamplingParams
from engine.engine import Engine, Request
from engine.errors import ModelLoadError
from engine.events import Finished
from engine.inspect import Inspector
from engine.weights import PackedEmbedding, PackedLinear, PackedPart, PackedSiblings, pack_weights, weight_bytes
from tests.engine.helpers import run

GREEDY = SamplingParams(max_new_tokens=40, temperature=0, top_k=0, top_p=1.0, ignore_eos=True)
PROMPTS = [
    "Once upon a time, there was a cat named Whiskers.",
    "The boats",
    "Every morning the cat walked along the shore and watched the boats come home with fish. One day a storm came.",
    "Mara found the cat on the pier",
]


def a_linear(in_features=96, out_features=80, bias=True):
    torch.manual_seed(0)
    linear = torch.nn.Linear(in_features, out_features, bias=bias)
    # Inputs of very different sizes, and one channel far larger than the rest, as a
    # transformer's activations have.
    x = torch.randn(3, 7, in_features) * torch.logspace(-2, 2, 7)[None, :, None]
    x[..., 5] *= 30
    return linear, x


@pytest.mark.parametrize(("weights", "tolerance"), [("float16", 2e-3), ("int8", 3e-2)])
def test_a_packed_layer_computes_the_linear_product_within_its_precision(weights, tolerance):
    linear, x = a_linear()
    with torch.inference_mode():
        expected = linear(x)
        got = PackedLinear(linear, weights)(x)
    assert got.shape == expected.shape == (3, 7, 80)
    # Relative to each row's size: the error of a row of size 100 may be 10,000 times
    # that of a row of size 0.01.
    error = (got - expected).abs().amax(dim=-1) / expected.abs().amax(dim=-1)
    assert float(error.max()) < tolerance


def test_an_int8_row_gives_exactly_the_same_result_alone_and_in_any_batch():
    linear, x = a_linear(bias=False)
    layer = PackedLinear(linear, "int8")
    rows = x.reshape(-1, 96)
    with torch.inference_mode():
        alone = torch.cat([layer(rows[i : i + 1]) for i in range(rows.shape[0])])
        together = layer(rows)
        reversed_batch = layer(rows.flip(0)).flip(0)
    assert torch.equal(alone, together) and torch.equal(alone, reversed_batch)


def three_siblings():
    torch.manual_seed(1)
    # q, k and v of grouped-query attention: k and v narrower than q; one without a bias.
    return [torch.nn.Linear(96, 96), torch.nn.Linear(96, 32, bias=False), torch.nn.Linear(96, 32)]


@pytest.mark.parametrize(("weights", "tolerance"), [("float16", 2e-3), ("int8", 3e-2)])
def test_packed_siblings_give_each_its_own_product_whatever_the_order_of_the_calls(weights, tolerance):
    linears = three_siblings()
    siblings = PackedSiblings(linears, weights)
    parts = [PackedPart(siblings, index) for index in range(3)]
    _, x = a_linear()
    y = x.flip(1)
    with torch.inference_mode():
        # In order on one input; then interleaved with another input, out of order, and twice.
        calls = [(0, x), (1, x), (2, x), (2, y), (0, x), (1, y), (1, y), (0, y), (2, x), (1, x)]
        for index, rows in calls:
            got, expected = parts[index](rows), linears[index](rows)
            assert got.shape == expected.shape
            error = (got - expected).abs().amax(dim=-1) / expected.abs().amax(dim=-1)
            assert float(error.max()) < tolerance, (index, float(error.max()))


def test_siblings_called_in_order_on_one_input_make_one_product():
    siblings = PackedSiblings(three_siblings(), "float16")
    parts = [PackedPart(siblings, index) for index in range(3)]
    products = []
    real = siblings.packed.forward
    siblings.packed.forward = lambda rows: products.append(rows) or real(rows)
    _, x = a_linear()
    with torch.inference_mode():
        for part in parts:
            part(x)
        # The next step's input is a new tensor with the same values: a product of its own.
        next_step = x.clone()
        for part in parts:
            part(next_step)
    assert len(products) == 2
    # Nothing is held once every sibling has had its part.
    assert siblings._last is None


def test_packing_replaces_every_linear_and_drops_the_float32_weights(tiny_model_dir):
    loaded = loader.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu"))
    model = loaded.model
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    before = weight_bytes(model)
    assert pack_weights(model, "int8") == linears > 0
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    # Each layer's q, k and v share one product, and its gate and up another.
    layer = model.model.layers[0]
    assert layer.self_attn.q_proj.siblings is layer.self_attn.v_proj.siblings
    assert layer.mlp.gate_proj.siblings is layer.mlp.up_proj.siblings
    assert isinstance(layer.self_attn.o_proj, PackedLinear) and isinstance(layer.mlp.down_proj, PackedLinear)
    assert weight_bytes(model) < 0.6 * before
    with pytest.raises(ValueError, match="Unknown weight format 'int4'"):
        pack_weights(model, "int4")


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_the_engine_writes_what_float32_writes_where_the_model_is_sure(tiny_model_dir, dtype):
    """Greedy continuations of a smaller-weighted model follow float32's token for token as
    long as float32's choice is clear: compared position by position, on float32's own
    continuation, wherever its top token leads the next by a margin."""
    plain = loader.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu"))
    packed = loader.load(ModelSpec(source=str(tiny_model_dir), dtype=dtype, device="cpu"))
    assert packed.weights == dtype and packed.dtype == torch.float32 and packed.precision == f"{dtype} weights"
    clear = 0
    for prompt in PROMPTS:
        ids = plain.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            ids = plain.model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=0)
            expected = plain.model(ids).logits[0]
            got = packed.model(ids).logits[0]
        top2 = expected.topk(2, dim=-1).values
        sure = (top2[:, 0] - top2[:, 1]) > 0.5
        clear += int(sure.sum())
        assert torch.equal(got.argmax(-1)[sure], expected.argmax(-1)[sure])
    assert clear > 50  # the comparison covered enough positions to mean something


def test_packed_token_embeddings_look_up_what_float32_holds_within_their_precision(tiny_model_dir):
    plain = loader.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu")).model
    ids = torch.tensor([[3, 17, 42, 99]])
    expected = plain.get_input_embeddings()(ids).detach()
    for weights, tolerance in (("float16", 1e-3), ("int8", 1e-2)):
        packed = loader.load(ModelSpec(source=str(tiny_model_dir), dtype=weights, device="cpu")).model
        embeddings = packed.get_input_embeddings()
        assert isinstance(embeddings, PackedEmbedding) and not any(True for _ in packed.parameters() if _.dim() == 2)
        got = embeddings(ids)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert float((got - expected).abs().max() / expected.abs().max()) < tolerance
        assert torch.equal(embeddings.weight[ids[0]], got[0])  # the whole table, as Inspect reads it


def test_inspect_answers_on_a_packed_model_as_on_float32(tiny_model_dir):
    plain = Inspector(loader.load(ModelSpec(source=str(tiny_model_dir), dtype="float32", device="cpu")))
    packed = Inspector(loader.load(ModelSpec(source=str(tiny_model_dir), dtype="float16", device="cpu")))
    nearest = [n["id"] for n in plain.neighbours("cat", count=3)["neighbours"]]
    assert [n["id"] for n in packed.neighbours("cat", count=3)["neighbours"]] == nearest
    attention = packed.attention(PROMPTS[0], layer=0)
    assert attention["position"] == len(attention["tokens"]) - 1 and attention["heads"]
    assert len(packed.map(["cat", "sea", "boats"])) == 3


@pytest.fixture(scope="module", params=["float16", "int8"])
def packed_engine(request, tiny_model_dir):
    engine = Engine.load(ModelSpec(source=str(tiny_model_dir), dtype=request.param, device="cpu"), EngineConfig())
    yield engine
    engine.shutdown()


def test_greedy_and_seeded_tokens_in_a_batch_equal_the_tokens_alone_for_each_format(packed_engine):
    sampled = SamplingParams(max_new_tokens=40, seed=3, temperature=0.9, top_k=40, top_p=0.9)
    params = [GREEDY, sampled, GREEDY, sampled]
    pairs = list(enumerate(zip(PROMPTS, params, strict=True)))
    alone = [run(packed_engine, p, q, request_id=f"alone{i}")[2].token_ids for i, (p, q) in pairs]
    handles = [packed_engine.submit(Request(f"b{i}", p, q)) for i, (p, q) in pairs]
    together = [next(e for e in h.events() if isinstance(e, Finished)).token_ids for h in handles]
    assert together == alone


def test_int8_on_a_gpu_is_refused_with_a_message():
    with pytest.raises(ModelLoadError, match="int8 weights run on the CPU only"):
        loader.pick_dtype("int8", torch.device("cuda"))


def test_an_unknown_dtype_is_refused_with_the_ones_there_are():
    with pytest.raises(ModelLoadError, match="Unknown dtype 'int4'; use auto, float32, bfloat16, float16, int8"):
        loader.pick_dtype("int4", torch.device("cpu"))


def test_int8_left_to_choose_its_device_runs_on_the_cpu():
    assert loader.pick_device("auto", "int8") == torch.device("cpu")


def test_the_cpu_default_is_float16_weights_computing_in_float32():
    assert loader.pick_dtype("auto", torch.device("cpu")) == (torch.float32, "float16")
    assert loader.pick_dtype("float32", torch.device("cpu")) == (torch.float32, "float32")
    assert loader.pick_dtype("bfloat16", torch.device("cpu")) == (torch.bfloat16, "bfloat16")
