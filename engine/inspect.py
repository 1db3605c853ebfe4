"""Looking inside the model for the writer's Inspect panel: the tokens of a passage, the
attention a word pays to the words before it, and neighbours in the embedding space.

Each view is its own forward pass (or none), on demand; nothing here runs in the
decoding loop. Attention needs the eager implementation, which returns its weights: an
eager "twin" of the engine's model shares its weights (no second copy in memory), so the
engine's own model keeps its faster attention.
"""

import copy
import threading

import torch

from engine.config import MAX_MAP_WORDS
from engine.detokenize import IncrementalDetokenizer
from engine.errors import InspectError
from engine.weights import PackedEmbedding, PackedLinear, PackedPart

# The longest passage the attention view reads, in tokens (its last ones).
MAX_ATTENTION_TOKENS = 512


class Inspector:
    def __init__(self, loaded):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self._twin = None
        self._lock = threading.Lock()

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _piece(self, token_id: int) -> str:
        """One token decoded alone (the neighbours view's tokens stand alone)."""
        return self.tokenizer.decode([token_id])

    def _pieces(self, ids: list[int]) -> list[dict]:
        """[{"id", "text"}] for the tokens `ids`, each with the text it adds to the passage:
        a character split across tokens (an emoji is often two or three) goes whole to the
        token that completes it, and the ones before get "" (each decoded alone would be
        U+FFFD), as for recorded choices. The texts join to the passage."""
        detokenizer = IncrementalDetokenizer(self.tokenizer, [], skip_special_tokens=False)
        texts = [detokenizer.push(i) for i in ids]
        if texts:
            texts[-1] += detokenizer.flush()
        return [{"id": i, "text": text} for i, text in zip(ids, texts, strict=True)]

    def tokens(self, text: str) -> list[dict]:
        """The passage cut into the model's tokens: [{"id", "text"}]."""
        return self._pieces(self._ids(text))

    def attention(self, text: str, *, layer: int, position: int | None = None) -> dict:
        """How strongly the token at `position` (default: the last) attends to every token
        of the passage, in one layer: per head, and averaged over the heads. Weights on
        later tokens are 0: a token only sees what comes before it."""
        ids = self._ids(text)[-MAX_ATTENTION_TOKENS:]
        if not ids:
            raise InspectError("There is no text to look at.")
        layers = self.loaded.model.config.num_hidden_layers
        if not 0 <= layer < layers:
            raise InspectError(f"layer is from 0 to {layers - 1}; got {layer}.")
        position = len(ids) - 1 if position is None else position
        if not 0 <= position < len(ids):
            raise InspectError(f"position is from 0 to {len(ids) - 1}, a token of the passage; got {position}.")
        with torch.no_grad():
            out = self._eager()(torch.tensor([ids], device=self.loaded.device), output_attentions=True)
        heads = out.attentions[layer][0, :, position, :].float()  # [heads, tokens]
        return {
            "tokens": self._pieces(ids),
            "position": position,
            "layer": layer,
            "layers": layers,
            "heads": [_rounded(row) for row in heads],
            "average": _rounded(heads.mean(dim=0)),
        }

    def neighbours(self, word: str, count: int = 10) -> dict:
        """The tokens nearest to a word in the input embedding space, by cosine
        similarity. The word is read as it appears mid-sentence (after a space); a word of
        several tokens is the mean of theirs."""
        ids, vector = self._word(word)
        table = self.loaded.model.get_input_embeddings().weight.float()
        similarity = torch.nn.functional.cosine_similarity(table, vector[None, :], dim=-1)
        similarity[ids] = -2  # not the word itself
        best = torch.topk(similarity, min(count, similarity.shape[0] - len(ids)))
        return {
            "word": word,
            "pieces": [self._piece(i) for i in ids],
            "neighbours": [
                {"id": i, "text": self._piece(i), "similarity": round(s, 4)}
                for i, s in zip(best.indices.tolist(), best.values.tolist(), strict=True)
            ],
        }

    def map(self, words: list[str]) -> list[dict]:
        """A 2-D picture of some words' embeddings: their first two principal components."""
        if not 2 <= len(words) <= MAX_MAP_WORDS:
            raise InspectError(f"The map takes 2 to {MAX_MAP_WORDS} words; got {len(words)}.")
        vectors = torch.stack([self._word(word)[1] for word in words])
        centred = vectors - vectors.mean(dim=0)
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
        points = u[:, :2] * s[:2]
        if points.shape[1] < 2:
            points = torch.cat([points, torch.zeros(len(words), 1)], dim=1)
        return [
            {"word": word, "x": round(float(x), 4), "y": round(float(y), 4)}
            for word, (x, y) in zip(words, points.tolist(), strict=True)
        ]

    def _word(self, word: str) -> tuple[list[int], torch.Tensor]:
        word = word.strip()
        if not word:
            raise InspectError("Type a word.")
        ids = self._ids(" " + word)
        rows = self.loaded.model.get_input_embeddings()(torch.tensor(ids, device=self.loaded.device))
        return ids, rows.float().mean(dim=0)

    def _eager(self):
        """The model again, with eager attention, sharing every weight and buffer."""
        with self._lock:
            if self._twin is None:
                model = self.loaded.model
                config = copy.deepcopy(model.config)
                config._attn_implementation = "eager"
                with torch.device("meta"):
                    twin = type(model)(config)
                # Packed layers hold their weights outside the state dict: the twin takes them whole.
                for name, module in model.named_modules():
                    if isinstance(module, (PackedLinear, PackedPart, PackedEmbedding)):
                        owner, _, attribute = name.rpartition(".")
                        setattr(twin.get_submodule(owner), attribute, module)
                twin.load_state_dict(model.state_dict(), assign=True, strict=True)
                for name, buffer in model.named_buffers():  # rotary tables are not in the state dict
                    owner, _, attribute = name.rpartition(".")
                    twin.get_submodule(owner).register_buffer(attribute, buffer, persistent=False)
                self._twin = twin.eval()
            return self._twin


def _rounded(values: torch.Tensor) -> list[float]:
    return [round(v, 5) for v in values.tolist()]
