"""A tiny Llama model and byte-level BPE tokenizer, built in a second or two for tests.

Its weights are random (seeded), so its text is nonsense, but every code path that the
real model takes runs the same: tokenizer, KV cache, sampling, detokenizing, EOS.
"""

from pathlib import Path

CORPUS = """
Once upon a time, there was a cat named Whiskers. Whiskers lived in a small house by the sea.
Every morning the cat walked along the shore and watched the boats come home with fish.
One day a storm came, and the boats did not come home. Whiskers waited and waited.
The old fisherman's daughter, Mara, found the cat on the pier and carried it inside.
"We will wait together," she said, and they sat by the window until the lights appeared.
Café, naïve, déjà vu: the village had words from everywhere. 猫は海を見ていた。 🐈🌊
"""


def build_tiny_model(target: Path, *, layers: int = 2, hidden: int = 64, context: int = 512, eos: bool = True) -> Path:
    """The tiny model; bigger `layers` and `hidden` make it slower, and without `eos` it
    never ends a story early (the fault tests want one that is still writing when they
    strike)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],
    )
    # Only the corpus's own bytes, not all 256: random weights then write printable text
    # rather than control characters, which a browser's textarea would rewrite.
    tokenizer.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>" if eos else None
    )

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.eos_token_id if eos else fast.bos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Output weights that spread the probabilities, so that sampling with different
    # seeds writes different text (the default init makes one token win everywhere).
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.1)
    model.save_pretrained(target)
    fast.save_pretrained(target)
    return target
