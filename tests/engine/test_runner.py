import pytest
import torch

from engine.config import BLOCK_SIZE
from engine.runner import PagedCache, Runner, SkinnyLinear, span_groups, use_skinny_linears


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


def _cache(blocks=4096):
    return PagedCache(layers=2, kv_heads=1, head_dim=2, dtype=torch.float32, device="cpu", blocks=blocks)


def test_the_paged_cache_grows_keeping_what_was_written():
    cache = _cache()
    cache.reserve(3)
    first = cache.blocks
    cache.keys[1][2 * BLOCK_SIZE + 5, 0, 1] = 7.0

    cache.reserve(first + 1)

    assert cache.blocks >= first + 1
    assert cache.keys[1][2 * BLOCK_SIZE + 5, 0, 1] == 7.0
    assert torch.count_nonzero(cache.keys[1][: cache.blocks * BLOCK_SIZE]) == 1


def test_blocks_reached_for_the_first_time_are_zeros_whatever_the_memory_held():
    # Padding and the unwritten end of a row's last block are read, masked: a NaN there
    # would turn the row's attention into NaN (0 x NaN).
    cache = _cache()
    cache.reserve(1)
    usable = cache.blocks
    for tensor in cache.keys + cache.values:
        tensor[usable * BLOCK_SIZE :] = float("nan")

    cache.reserve(usable + 1)

    for tensor in cache.keys + cache.values:
        assert not tensor[: cache.blocks * BLOCK_SIZE].isnan().any()


def test_the_paged_cache_never_grows_past_its_blocks():
    cache = _cache(blocks=100)
    cache.reserve(90)
    cache.reserve(91)  # doubling would make it 180
    assert cache.blocks == 100


def _runner(engine):
    return Runner(engine.loaded.model, engine.loaded.device, engine.context_window, blocks=256)


def test_a_prompt_read_in_pieces_gives_the_logits_of_one_piece(engine):
    prompt = list(range(3, 203))
    whole = _runner(engine).run([list(range(1, 14))], [0], [prompt])

    runner = _runner(engine)
    table = list(range(20, 33))
    for start, end in [(0, 37), (37, 160), (160, 200)]:
        pieces = runner.run([table], [start], [prompt[start:end]])

    torch.testing.assert_close(pieces, whole, rtol=1e-4, atol=1e-4)


def test_rows_in_scattered_blocks_read_what_they_wrote(engine):
    # Two prompts share a pass, their blocks interleaved and out of order; each gets the
    # logits it gets alone in blocks of its own.
    first, second = list(range(5, 45)), list(range(50, 71))
    alone = [_runner(engine).run([[1, 2, 3]], [0], [prompt]) for prompt in (first, second)]

    together = _runner(engine).run([[9, 4, 7], [8, 3]], [0, 0], [first, second])

    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-4)


def test_rows_of_very_different_lengths_are_padded_apart_and_answered_in_order(engine):
    short, long, middle = list(range(7, 27)), [3 + i % 90 for i in range(300)], [9 + i % 80 for i in range(130)]
    alone = [_runner(engine).run([list(range(1, 20))], [0], [prompt]) for prompt in (short, long, middle)]

    together = _runner(engine).run([[1, 2], list(range(3, 22)), list(range(30, 39))], [0, 0, 0], [short, long, middle])

    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-4, atol=1e-4)


def test_a_group_ends_where_a_row_is_less_than_half_as_long_as_its_first():
    assert span_groups([6300, 3200, 3150, 500, 480, 250, 1]) == [(3, 6300), (3, 500), (1, 1)]
    assert span_groups([40, 21, 20, 19]) == [(3, 40), (1, 19)]
    assert span_groups([7]) == [(1, 7)]
