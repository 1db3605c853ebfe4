import pytest
import torch

from engine.runner import SkinnyLinear, use_skinny_linears


@pytest.mark.parametrize("shape", [(5,), (1, 5), (1, 1, 5), (2, 5), (4, 1, 5), (3, 7, 5), (64, 5), (65, 5), (2, 40, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_skinny_linear_computes_what_nn_linear_does(shape, bias):
    torch.manual_seed(0)
    plain = torch.nn.Linear(5, 11, bias=bias)
    skinny = torch.nn.Linear(5, 11, bias=bias)
    skinny.load_state_dict(plain.state_dict())
    skinny.__class__ = SkinnyLinear
    x = torch.randn(shape)

    expected, got = plain(x), skinny(x)

    assert got.shape == expected.shape == (*shape[:-1], 11)
    torch.testing.assert_close(got, expected)


def test_only_plain_cpu_float32_linears_are_swapped():
    class Custom(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Linear(4, 4).to(torch.bfloat16), Custom(4, 4), torch.nn.LayerNorm(4)
    )

    use_skinny_linears(model)

    assert [type(module) for module in model] == [SkinnyLinear, torch.nn.Linear, Custom, torch.nn.LayerNorm]


def _cache(max_positions=8192):
    from engine.runner import SlotCache

    return SlotCache(layers=2, kv_heads=1, head_dim=2, dtype=torch.float32, device="cpu", max_positions=max_positions)


def test_it_keeps_a_long_rows_keys_when_a_short_request_adds_a_row():
    # A long story runs in row 0; a short one then needs a second row. Growing the rows
    # must keep every position the long row filled, not shrink to the short one's length.
    cache = _cache()
    filled = torch.arange(8133, dtype=torch.float32)[None, :, None].expand(1, 8133, 2)
    cache.reserve(1, 8134)
    for tensor in cache.keys + cache.values:
        tensor[0, :, :8133] = filled

    cache.reserve(2, 297)

    assert cache.rows >= 2 and cache.positions >= 8134
    for tensor in cache.keys + cache.values:
        assert torch.equal(tensor[0, :, :8133], filled)


def test_it_grows_rows_and_positions_together_keeping_what_was_written():
    cache = _cache(max_positions=2048)
    cache.reserve(2, 300)
    cache.keys[0][1, 0, 299, 1] = 7.0

    cache.reserve(3, 1000)

    assert cache.rows >= 3 and cache.positions >= 1000
    assert cache.keys[0][1, 0, 299, 1] == 7.0
