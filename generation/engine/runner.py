"""The only module that calls the model."""

import torch


class Runner:
    def __init__(self, model, device: torch.device):
        self.model = model
        self.device = device

    @torch.inference_mode()
    def prefill(self, input_ids: list[int]):
        """Runs the whole prompt; returns the last position's logits and the KV cache."""
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, use_cache=True)
        return out.logits[0, -1], out.cache

    @torch.inference_mode()
    def decode(self, token_id: int, cache):
        """Runs one new token against the request's KV cache."""
        ids = torch.tensor([[token_id]], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, cache=cache, use_cache=True)
        return out.logits[0, -1], out.cache
