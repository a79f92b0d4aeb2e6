"""Transformers teachers (CLIP, LLaVA, LLaVA+CLIP) on tiny random checkpoints built offline in tmp folders.

The checkpoints are saved with save_pretrained and loaded back through the public loaders, so the offline
lookup, processor, chat template, generation and hidden-state averaging all run for real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mocha.core.device import choose_device as pick_device
from mocha.errors import ConfigError
from mocha.teacher.base import MergedTeacher, teacher_key
from mocha.teacher.clip import ClipTeacher
from mocha.teacher.hf import model_revision, pick_dtype, resolve_model
from mocha.teacher.llava import LlavaTeacher
from mocha.teacher.registry import create_teacher

MAX_NEW = 8
WORDS = ("user assistant : <image> describe accurately the visual appearance of using as many adjectives possible . "
         "include materials , colors shapes breeds and any other relevant details cat dog mug red blue green small "
         "large round shiny soft").split()
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
# the llava-hf LLaVA-1.5 chat format: "USER: <image>\n{text} ASSISTANT:"
CHAT_TEMPLATE = ("{% for message in messages %}{{ message['role'].upper() + ': ' }}{% for c in message['content'] %}"
                 "{% if c['type'] == 'image' %}{{ '<image>\n' }}{% endif %}{% endfor %}"
                 "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endif %}"
                 "{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
# labels of different token lengths, so batched prompts need left padding
LABELS = ["cat", "red round mug", "dog", "small blue cat", "mug"]


def _crops(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3), dtype=np.uint8)
            for _ in range(n)]


CROPS = _crops(len(LABELS))


def _tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + sorted(set(WORDS) - set(SPECIALS)))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def _vision_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, projection_dim=8)


def _naive_h(net, processor, crop: np.ndarray, prompt: str, eos: list[int]) -> tuple[torch.Tensor, int]:
    """Greedy generate keeping every layer of every step; mean of the last layer's state per step up to EOS."""
    inputs = processor(images=[crop], text=[prompt], return_tensors="pt")
    out = net.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW, eos_token_id=eos,
                       pad_token_id=3, output_hidden_states=True, return_dict_in_generate=True)
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    n = next((i + 1 for i, t in enumerate(new) if t in eos), len(new))
    steps = [out.hidden_states[t][-1][0, -1] for t in range(n)]  # step t: last layer, last position
    return torch.stack(steps).float().mean(0), n


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    """A tiny LLaVA (CLIP vision 2 layers, Llama 32-d 2 layers) whose EOS ends some descriptions early."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = _tokenizer()
    proc = LlavaProcessor(image_processor=_image_processor(), tokenizer=tok, patch_size=8,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       bos_token_id=1, eos_token_id=2, pad_token_id=3, initializer_range=0.2)
    cfg = LlavaConfig(vision_config=_vision_config(), text_config=text, image_token_index=tok.convert_tokens_to_ids(
        "<image>"), vision_feature_layer=-2, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    net = LlavaForConditionalGeneration(cfg).eval()
    # a second EOS: the token crop 0 generates third, so descriptions in a batch end at different steps
    proc.tokenizer.padding_side = "left"
    inputs = proc(images=CROPS[:1], text=[f"USER: <image>\ndescribe {LABELS[0]} ASSISTANT:"], return_tensors="pt")
    with torch.no_grad():
        seq = net.generate(**inputs, do_sample=False, max_new_tokens=3, eos_token_id=2, pad_token_id=3)
    net.generation_config.eos_token_id = sorted({2, int(seq[0, -1])})
    net.generation_config.pad_token_id, net.generation_config.bos_token_id = 3, 1
    folder = tmp_path_factory.mktemp("tiny-llava")
    net.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def _save_clip(folder: Path, seed: int) -> Path:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config={"vocab_size": 50, "hidden_size": 16, "intermediate_size": 32,
                                  "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16},
                     vision_config=_vision_config().to_dict(), projection_dim=8)
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(folder)
    _image_processor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return _save_clip(tmp_path_factory.mktemp("tiny-clip"), seed=0)


def _llava(folder: Path, **kw) -> LlavaTeacher:
    kw.setdefault("decoding", "greedy")
    kw.setdefault("max_new_tokens", MAX_NEW)
    return LlavaTeacher.load(model=str(folder), **kw)


# ---------------------------------------------------------------- CLIP


def test_clip_unit_norm_rows_labels_ignored_and_batching(clip_dir: Path) -> None:
    teacher = ClipTeacher.load(model=str(clip_dir), batch_size=2)
    assert teacher.name == "clip" and teacher.dim == 8
    z = teacher.embed(CROPS, LABELS)
    assert z.shape == (5, 8) and z.dtype == torch.float32 and z.device.type == "cpu"
    assert torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(teacher.embed(CROPS, ["x"] * 5), z)  # labels do not matter
    whole = ClipTeacher.load(model=str(clip_dir), batch_size=32).embed(CROPS, LABELS)
    assert torch.allclose(whole, z, atol=1e-5)
    assert not torch.allclose(z[0], z[1], atol=1e-3)  # different crops, different vectors
    assert teacher.embed([], []).shape == (0, 8)
    s = teacher.settings()
    assert s["image_size"] == {"height": 32, "width": 32} and s["dtype"] == "float32"
    assert s["model"] == "local" and s["revision"] == model_revision(str(clip_dir))
    with pytest.raises(ConfigError, match="crop 0"):
        teacher.embed([CROPS[0][..., 0]], ["cat"])


def test_clip_revision_tells_checkpoints_apart(clip_dir: Path, tmp_path: Path) -> None:
    other = _save_clip(tmp_path / "other", seed=1)  # same architecture and sizes, other weights
    a, b = ClipTeacher.load(model=str(clip_dir)), ClipTeacher.load(model=str(other))
    assert a.settings()["revision"] != b.settings()["revision"]
    assert teacher_key(a) != teacher_key(b)
    copy = shutil.copytree(clip_dir, tmp_path / "copy")  # same checkpoint elsewhere: same revision
    assert model_revision(str(copy)) == a.settings()["revision"]


def test_hub_id_resolves_from_local_cache_only(clip_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny--clip"
    shutil.copytree(clip_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    teacher = create_teacher("clip", model="tiny/clip")
    assert teacher.settings()["model"] == "tiny/clip" and teacher.settings()["revision"] == commit
    by_path = ClipTeacher.load(model=str(repo / "snapshots" / commit))  # the same snapshot named by its path
    assert teacher_key(by_path) == teacher_key(teacher)
    with pytest.raises(ConfigError) as err:
        resolve_model("tiny/absent", "--model")
    msg = str(err.value)
    assert "not in the Hugging Face cache" in msg and str(tmp_path / "hub") in msg
    assert "huggingface-cli download tiny/absent" in msg and "model=/path/to/folder" in msg


def test_missing_or_broken_models_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--model .*no such folder"):
        create_teacher("llava", model=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="huggingface-cli download nobody/not-cached-llava"):
        create_teacher("llava", model="nobody/not-cached-llava")
    with pytest.raises(ConfigError, match="--clip-model .*no config.json"):
        create_teacher("clip", model=str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')  # config but no weights
    with pytest.raises(ConfigError, match="--clip-model: cannot load"):
        ClipTeacher.load(model=str(tmp_path))


def test_device_and_dtype_parsing() -> None:
    cpu = torch.device("cpu")
    assert pick_device("cpu") == cpu
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_dtype(None, cpu) == torch.float32 and pick_dtype(None, torch.device("cuda")) == torch.float16
    assert pick_dtype("bf16", cpu) == torch.bfloat16 and pick_dtype("float16", cpu) == torch.float16
    with pytest.raises(ConfigError, match="--dtype"):
        pick_dtype("int8", cpu)


# ---------------------------------------------------------------- LLaVA


def test_llava_hidden_mean_equals_naive_per_step_states(llava_dir: Path) -> None:
    teacher = _llava(llava_dir, batch_size=5)
    assert teacher.name == "llava" and teacher.dim == 32
    h = teacher.embed(CROPS, LABELS)
    assert h.shape == (5, 32) and h.dtype == torch.float32
    lengths = []
    for i, (crop, label) in enumerate(zip(CROPS, LABELS, strict=True)):
        with torch.no_grad():
            ref, n = _naive_h(teacher.model, teacher.processor, crop, teacher.render(label), teacher.eos_ids)
        lengths.append(n)
        assert torch.allclose(h[i], ref, atol=1e-4), f"region {i}"
    assert min(lengths) < MAX_NEW and len(set(lengths)) > 1  # EOS cut and mixed lengths were exercised


def test_llava_batched_equals_one_at_a_time_and_is_deterministic(llava_dir: Path) -> None:
    batched = _llava(llava_dir, batch_size=4)  # 4 + 1: left padding, and a short last batch
    single = _llava(llava_dir, batch_size=1)
    h = batched.embed(CROPS, LABELS)
    assert torch.allclose(h, single.embed(CROPS, LABELS), atol=1e-4)
    assert torch.equal(h, batched.embed(CROPS, LABELS))
    other = batched.embed(CROPS, ["mug", "cat", "green shiny mug", "dog", "cat"])  # other prompts
    assert not torch.allclose(h, other, atol=1e-3)
    assert batched.embed([], []).shape == (0, 32)


def test_llava_sampled_decodings_reproducible_with_seed(llava_dir: Path) -> None:
    for decoding in ("reference", "sample"):
        a = _llava(llava_dir, decoding=decoding, seed=3, batch_size=2)
        state = torch.get_rng_state()
        h = a.embed(CROPS, LABELS)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG stream is left alone
        assert torch.equal(h, _llava(llava_dir, decoding=decoding, seed=3, batch_size=2).embed(CROPS, LABELS))
        other = _llava(llava_dir, decoding=decoding, seed=4, batch_size=2).embed(CROPS, LABELS)
        assert not torch.allclose(h, other, atol=1e-3), decoding
    gen = _llava(llava_dir, decoding="reference").settings()["generate"]
    assert gen["num_beams"] == 3 and gen["do_sample"] and gen["no_repeat_ngram_size"] == 3


def test_llava_settings_track_decoding_prompt_and_checkpoint(llava_dir: Path, tmp_path: Path) -> None:
    greedy = _llava(llava_dir)
    s = greedy.settings()
    assert s["prompt_template"].startswith("USER: <image>\nDescribe accurately the visual appearance of %s using")
    assert s["prompt_template"].endswith("details. ASSISTANT:")
    assert s["generate"]["max_new_tokens"] == MAX_NEW and s["seed"] == 0 and s["decoding"] == "greedy"
    keys = {teacher_key(greedy), teacher_key(_llava(llava_dir, decoding="sample")),
            teacher_key(_llava(llava_dir, max_new_tokens=4)), teacher_key(_llava(llava_dir, prompt="a %s"))}
    assert len(keys) == 4
    assert teacher_key(_llava(llava_dir)) == teacher_key(greedy)
    moved = shutil.copytree(llava_dir, tmp_path / "moved")
    assert teacher_key(_llava(moved)) == teacher_key(greedy)  # same checkpoint in another folder
    cfg = moved / "generation_config.json"
    cfg.write_text(cfg.read_text().replace('"pad_token_id": 3', '"pad_token_id": 3, "temperature": 0.5'))
    assert _llava(moved).settings()["revision"] != s["revision"]
    # without a chat template the literal LLaVA-1.5 format gives the same prompt
    greedy.processor.chat_template = None
    assert greedy.render("%s") == s["prompt_template"]


def test_llava_bad_options_raise_config_error(llava_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--decoding: unknown preset 'beam'"):
        LlavaTeacher.load(model=str(llava_dir), decoding="beam")
    with pytest.raises(ConfigError, match="--decoding"):
        create_teacher("llava", model="nobody/not-cached", decoding="nope")  # checked before any lookup
    with pytest.raises(ConfigError, match="--max-new-tokens"):
        _llava(llava_dir, max_new_tokens=0)
    with pytest.raises(ConfigError, match="--text: not an option of the llava teacher"):
        create_teacher("llava", model=str(llava_dir), text="a photo of {label}")
    with pytest.raises(ConfigError, match="--prompt: not an option of the clip teacher"):
        create_teacher("llava+clip", model=str(llava_dir), clip_model=str(llava_dir), clip_prompt="a %s")
    with pytest.raises(ConfigError, match="3 labels"):
        _llava(llava_dir).embed(CROPS[:2], LABELS[:3])


# ---------------------------------------------------------------- registry and merge


def test_registry_llava_clip_merge_has_equal_halves(llava_dir: Path, clip_dir: Path) -> None:
    merged = create_teacher("llava+clip", model=str(llava_dir), clip_model=str(clip_dir), decoding="greedy",
                            max_new_tokens=MAX_NEW, device="cpu")
    assert isinstance(merged, MergedTeacher) and merged.dim == 32 + 8
    u = merged.embed(CROPS, LABELS)
    h, z = u[:, :32], u[:, 32:]
    assert torch.allclose(h.norm(dim=1), z.norm(dim=1), rtol=1e-5)
    assert torch.allclose(h, _llava(llava_dir).embed(CROPS, LABELS), atol=1e-4)
    assert torch.allclose(torch.nn.functional.normalize(z, dim=1),
                          create_teacher("clip", model=str(clip_dir)).embed(CROPS, LABELS), atol=1e-5)
    assert merged.settings()["text"]["decoding"] == "greedy" and merged.settings()["image"]["name"] == "clip"
    assert isinstance(create_teacher("llava", model=str(llava_dir), decoding="greedy"), LlavaTeacher)
