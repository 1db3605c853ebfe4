import pytest
import torch

from generation.engine.runner import SkinnyLinear, use_skinny_linears


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
