"""LLaVA text teacher: h_i = mean last-layer hidden state of the description LLaVA generates for a crop.

Per batch of regions (SPEC "Teacher embeddings"):
1. `generate` the descriptions, batched with left padding, under the chosen decoding preset. The RNG is
   re-seeded with `seed` at every generate call (the caller's RNG state is restored), so sampled decodings
   are reproducible for the same batch of regions; batch_size=1 makes each region independent of the others.
2. Re-run the base multimodal model (`LlavaForConditionalGeneration.model`, i.e. without the LM head) over
   the result the way generation saw it: one prefill of image + prompt, then one pass over the generated tokens
   on its KV cache without the image (so a generated "<image>" token stays a plain token, as during
   generation). Its `last_hidden_state` is the output of the language model's final RMSNorm after the last
   decoder layer: exactly the state the LM head turns into next-token logits, and what transformers reports
   as `hidden_states[-1]`. Only that tensor is kept (no per-layer, per-step states, no logits).
3. Average, per region, the states at the positions that *produced* the generated tokens: with P the padded
   prompt length and n the number of generated tokens up to and including the first EOS (all of them when
   there is no EOS), positions P-1 … P+n-2 (the last prompt token, then every generated token except the
   last). Left padding, the EOS position itself and the padding after EOS are excluded. For greedy decoding
   this equals averaging the last-layer states of the n generation steps; it is equally defined for beams.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mocha.core.device import choose_device
from mocha.errors import ConfigError
from mocha.teacher.base import Teacher, check_batch
from mocha.teacher.hf import (
    check_positive,
    dtype_name,
    json_safe,
    load_pretrained,
    model_label,
    model_revision,
    pick_dtype,
    reject_unknown,
    resolve_model,
)

REFERENCE_PROMPT = ("Describe accurately the visual appearance of %s using as many adjectives as possible. "
                    "Include materials, colors, shapes, breeds, and any other relevant details.")
LITERAL_TEMPLATE = "USER: <image>\n{prompt} ASSISTANT:"  # the LLaVA-1.5 chat format when the processor has none

# Sampling knobs are spelled out (transformers' defaults) so a checkpoint's generation_config cannot change them.
_SAMPLING = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}
DECODINGS: dict[str, dict[str, Any]] = {
    "reference": {"num_beams": 3, "do_sample": True, "no_repeat_ngram_size": 3, **_SAMPLING},
    "greedy": {"num_beams": 1, "do_sample": False},
    "sample": {"num_beams": 1, "do_sample": True, **_SAMPLING},
}


def decoding_kwargs(decoding: str, max_new_tokens: int) -> dict[str, Any]:
    """The generate kwargs of a preset ("reference", "greedy", "sample") with `max_new_tokens`."""
    key = str(decoding).strip().lower()
    if key not in DECODINGS:
        raise ConfigError(f"--decoding: unknown preset {decoding!r}; choose one of {', '.join(DECODINGS)}")
    return {**DECODINGS[key], "max_new_tokens": check_positive(max_new_tokens, "--max-new-tokens")}


def _eos_ids(net: Any, tokenizer: Any) -> list[int]:
    eos = getattr(net.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("--model: the checkpoint defines no EOS token (generation_config.eos_token_id)")
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def generated_lengths(new_tokens: Tensor, eos_ids: list[int]) -> Tensor:
    """Per row, how many generated tokens count: up to and including the first EOS, else all of them."""
    is_eos = torch.isin(new_tokens, torch.tensor(eos_ids, device=new_tokens.device))
    return torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, new_tokens.shape[1]).long()


class LlavaTeacher(Teacher):
    """`embed` → (n, text hidden size) mean hidden state of each region's generated description."""

    name = "llava"

    def __init__(self, model: Any, processor: Any, model_id: str, revision: str, dtype: torch.dtype,
                 device: torch.device, decoding: str = "reference", max_new_tokens: int = 300, seed: int = 0,
                 prompt: str | None = None, batch_size: int = 4) -> None:
        self.model, self.processor = model.eval(), processor
        self.processor.tokenizer.padding_side = "left"  # batched generation appends after the prompt
        self.model_id, self.revision, self.dtype, self.device = model_id, revision, dtype, device
        self.decoding = str(decoding).strip().lower()
        self.generate_kwargs = decoding_kwargs(decoding, max_new_tokens)
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise ConfigError(f"--seed: expected an integer, got {seed!r}") from None
        self.prompt = REFERENCE_PROMPT if prompt is None else str(prompt)
        if not self.prompt.strip():
            raise ConfigError("--prompt: empty prompt; use %s where the coarse label name goes")
        self.batch_size = check_positive(batch_size, "--batch-size")
        self.dim = int(model.config.text_config.hidden_size)
        tok = processor.tokenizer
        self.eos_ids = _eos_ids(model, tok)
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos_ids[0]
        self.generate_kwargs.update(eos_token_id=self.eos_ids, pad_token_id=int(pad))

    @classmethod
    def load(cls, model: str = "llava-hf/llava-1.5-7b-hf", device: str | torch.device | None = None,
             dtype: str | torch.dtype | None = None, decoding: str = "reference", max_new_tokens: int = 300,
             seed: int = 0, prompt: str | None = None, batch_size: int = 4, **unknown: Any) -> LlavaTeacher:
        """Load a LLaVA checkpoint from a local folder or the local Hugging Face cache (never downloads)."""
        reject_unknown(unknown, "llava")
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        decoding_kwargs(decoding, max_new_tokens)  # fail on bad options before loading gigabytes
        folder = resolve_model(model, "--model")
        dev = choose_device(device)
        dt = pick_dtype(dtype, dev)
        net = load_pretrained(LlavaForConditionalGeneration, folder, "--model", dtype=dt).to(dev)
        processor = load_pretrained(AutoProcessor, folder, "--model")
        return cls(net, processor, model_label(model, folder), model_revision(folder), dt, dev, decoding,
                   max_new_tokens, seed, prompt, batch_size)

    def render(self, label: str) -> str:
        """The full model prompt for one coarse label (the processor's chat template when it has one)."""
        text = self.prompt.replace("%s", label)
        if getattr(self.processor, "chat_template", None):
            chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        return LITERAL_TEMPLATE.format(prompt=text)

    def settings(self) -> dict[str, Any]:
        return json_safe({"model": self.model_id, "revision": self.revision, "dtype": dtype_name(self.dtype),
                          "prompt_template": self.render("%s"), "decoding": self.decoding,
                          "generate": self.generate_kwargs, "seed": self.seed,
                          "hidden": "mean final-norm state at positions P-1..P+n-2"})

    @torch.inference_mode()
    def embed(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        check_batch(crops, labels)
        out = [torch.zeros(0, self.dim)]
        for start in range(0, len(crops), self.batch_size):
            end = start + self.batch_size
            out.append(self._embed_batch(crops[start:end], labels[start:end]))
        return torch.cat(out)

    def _embed_batch(self, crops: list[np.ndarray], labels: list[str]) -> Tensor:
        inputs = self.processor(images=list(crops), text=[self.render(lb) for lb in labels], return_tensors="pt",
                                padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # seeded per call, caller's RNG state untouched
            torch.manual_seed(self.seed)
            seqs = self.model.generate(**inputs, **self.generate_kwargs)
        n_new = generated_lengths(seqs[:, prompt_len:], self.eos_ids)  # (B,) >= 1
        n_max = int(n_new.max())
        mask = torch.cat([inputs["attention_mask"], torch.ones_like(seqs[:, prompt_len:prompt_len + n_max - 1])], 1)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate computes them
        # Mirror generation: prefill image + prompt, then the generated tokens on its cache without the image
        # (so a generated "<image>" token stays a plain token, as it was while generating).
        base = self.model.model
        pre = base(input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
                   attention_mask=inputs["attention_mask"], position_ids=positions[:, :prompt_len], use_cache=True)
        states = [pre.last_hidden_state[:, -1:]]  # position P-1 produced the first generated token
        if n_max > 1:  # the last counted token produced nothing we average: positions P .. P+n_max-2
            post = base(input_ids=seqs[:, prompt_len:prompt_len + n_max - 1], attention_mask=mask,
                        position_ids=positions[:, prompt_len:], past_key_values=pre.past_key_values, use_cache=True)
            states.append(post.last_hidden_state)
        hidden = torch.cat(states, 1).float()  # (B, n_max, H)
        keep = (torch.arange(n_max, device=hidden.device)[None, :] < n_new[:, None].to(hidden.device)).float()
        return ((hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)).cpu()

    def to(self, device: str | torch.device) -> LlavaTeacher:
        self.device = choose_device(device)
        self.model.to(self.device)
        return self
