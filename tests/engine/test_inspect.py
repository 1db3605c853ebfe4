"""The Inspect panel's views, on the tiny model: tokens, attention and embeddings."""

import pytest
import torch

from engine.errors import InspectError
from engine.inspect import Inspector

PROMPT = "Once upon a time, there was a cat named Whiskers."


@pytest.fixture(scope="module")
def inspector(engine):
    return Inspector(engine.loaded)


def test_tokens_are_the_models_own_and_join_to_the_passage(inspector, engine):
    tokens = inspector.tokens(PROMPT)
    assert [t["id"] for t in tokens] == engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    assert "".join(t["text"] for t in tokens) == PROMPT


@pytest.mark.parametrize("layer", [0, 1])
def test_attention_sums_to_one_over_the_visible_prefix_and_never_looks_ahead(inspector, layer):
    seen = inspector.attention(PROMPT, layer=layer, position=5)
    assert seen["layers"] == 2 and len(seen["heads"]) == 4
    for row in [*seen["heads"], seen["average"]]:
        assert len(row) == len(seen["tokens"])
        assert sum(row[:6]) == pytest.approx(1.0, abs=1e-3)
        assert row[6:] == [0.0] * (len(row) - 6)


def test_attention_is_what_an_independent_eager_pass_computes(inspector, engine):
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(engine.loaded.model.name_or_path, attn_implementation="eager")
    ids = torch.tensor([engine.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = reference(ids, output_attentions=True).attentions[1][0, :, -1, :]
    seen = inspector.attention(PROMPT, layer=1)
    assert torch.allclose(torch.tensor(seen["heads"]), expected, atol=1e-4)
    assert engine.loaded.model.config._attn_implementation != "eager"  # the engine's model is untouched


def test_a_bad_layer_or_position_is_refused(inspector):
    with pytest.raises(InspectError, match="layer is from 0 to 1; got 2"):
        inspector.attention(PROMPT, layer=2)
    with pytest.raises(InspectError, match="position is from 0 to"):
        inspector.attention(PROMPT, layer=0, position=999)


def test_neighbours_follow_the_embeddings_the_test_sets(tiny_model_dir):
    from engine.config import ModelSpec
    from engine.loader import load

    # float32: the test writes into the embedding table, which packed weights do not expose.
    loaded = load(ModelSpec(source=str(tiny_model_dir), dtype="float32"))
    inspector = Inspector(loaded)
    ids = {
        word: loaded.tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in ("cat", "sea", "boats")
    }
    assert all(len(i) == 1 for i in ids.values()), ids
    table = loaded.model.get_input_embeddings().weight
    with torch.no_grad():
        direction = torch.randn(table.shape[1])
        table[ids["cat"][0]] = direction
        table[ids["sea"][0]] = direction + 0.05 * torch.randn(table.shape[1])  # close to "cat"
        table[ids["boats"][0]] = -direction  # opposite

    found = inspector.neighbours("cat", count=400)
    order = [n["id"] for n in found["neighbours"]]
    assert order[0] == ids["sea"][0] and order[-1] == ids["boats"][0]
    assert ids["cat"][0] not in order and found["pieces"] == [" cat"]
    assert found["neighbours"][0]["similarity"] > 0.99

    points = {p["word"]: (p["x"], p["y"]) for p in inspector.map(["cat", "sea", "boats"])}
    distance = {w: (points[w][0] - points["cat"][0]) ** 2 + (points[w][1] - points["cat"][1]) ** 2 for w in points}
    assert distance["sea"] < distance["boats"]
    with pytest.raises(InspectError, match="2 to 20 words"):
        inspector.map(["cat"])


def test_a_character_split_across_tokens_is_spelled_whole_on_the_token_that_completes_it(inspector, engine):
    passage = "The cat 🐈 purred at the café, 🐈."
    tokens = inspector.tokens(passage)
    assert "".join(t["text"] for t in tokens) == passage
    assert not any("\ufffd" in t["text"] for t in tokens)
    # Each cat is three tokens (its bytes): the first two show "", the third the cat.
    assert [t["text"] for t in tokens if "🐈" in t["text"]] == [" 🐈", " 🐈"]
    assert sum(t["text"] == "" for t in tokens) == 4
    attention = inspector.attention(passage, layer=0)
    assert [t["text"] for t in attention["tokens"]] == [t["text"] for t in tokens]
