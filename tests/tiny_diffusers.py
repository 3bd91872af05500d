"""Real diffusers ControlNet pipelines at toy sizes, built offline from configs.

Random weights and a CLIP tokenizer of 54 tokens written to a folder: nothing is downloaded.
The VAE and the ControlNet's conditioning embedding each halve the size once, so a
control map of W×H gives latents of W/2×H/2; a step takes milliseconds on a CPU.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (
    AnimateDiffControlNetPipeline,
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    MotionAdapter,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

BLOCKS = (8, 16)
TEXT_WIDTH = 8
MAX_TOKENS = 16
LETTERS = string.ascii_lowercase
VOCAB = ["<|startoftext|>", "<|endoftext|>", *LETTERS, *(c + "</w>" for c in LETTERS)]


def tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is the letters (no merges: one token per letter)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS
    )


def text_encoder(cls=CLIPTextModel):
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=len(VOCAB), hidden_size=TEXT_WIDTH, intermediate_size=16,
        num_attention_heads=2, num_hidden_layers=1, max_position_embeddings=MAX_TOKENS,
        projection_dim=TEXT_WIDTH, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    return cls(config).eval()


def vae(levels: int = 2) -> AutoencoderKL:
    """Halves the size `levels - 1` times (2: once; 4: 8 times smaller, as SD's VAE)."""
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8,) * levels, in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * levels,
        up_block_types=["UpDecoderBlock2D"] * levels, norm_num_groups=4, layers_per_block=1,
    )  # fmt: skip


def unet(
    cross_attention_dim: int = TEXT_WIDTH, attention_level: int = 0, **sdxl
) -> UNet2DConditionModel:
    """Attention on one of the two levels: 0 at the latent size, 1 at half of it (16 times
    fewer pairs of positions: what keeps 512 px maps quick on a CPU)."""
    torch.manual_seed(0)
    down = ["DownBlock2D", "DownBlock2D"]
    down[attention_level] = "CrossAttnDownBlock2D"
    return UNet2DConditionModel(
        block_out_channels=BLOCKS, layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=down,
        up_block_types=[b.replace("Down", "Up") for b in reversed(down)], norm_num_groups=4,
        attention_head_dim=2, cross_attention_dim=cross_attention_dim, **sdxl,
    )  # fmt: skip


def controlnet(base: UNet2DConditionModel, levels: int = 2) -> ControlNetModel:
    """Its conditioning embedding shrinks the map as `vae(levels)` shrinks the image; it
    runs at the map's full size, so its first layers are the narrowest."""
    torch.manual_seed(0)
    widths = (2, 2, 4, 4, 8)[-levels:]
    return ControlNetModel.from_unet(base, conditioning_embedding_out_channels=widths)


def motion_adapter() -> MotionAdapter:
    torch.manual_seed(0)
    return MotionAdapter(
        block_out_channels=BLOCKS, motion_layers_per_block=1, motion_norm_num_groups=4,
        motion_num_attention_heads=2,
    )  # fmt: skip


def hub_repos(folder: Path) -> dict[str, Path]:
    """Folders laid out as the Hub repos the README's examples load (repo id -> folder): an
    SD 1.5 pipeline, an OpenPose ControlNet and an AnimateDiff motion adapter. Toy widths,
    and the VAE and the ControlNet shrink maps 16 times (SD's: 8), with attention at half
    the latent size, so the README's 512 px maps and 20 steps stay quick on a CPU; map
    sides must then be multiples of 16."""
    base = unet(attention_level=1)
    sd = StableDiffusionPipeline(
        vae=vae(levels=5), text_encoder=text_encoder(), tokenizer=tokenizer(folder / "vocab"),
        unet=base, scheduler=DDIMScheduler(clip_sample=False, steps_offset=1), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    repos = {
        "stable-diffusion-v1-5/stable-diffusion-v1-5": sd,
        "lllyasviel/control_v11p_sd15_openpose": controlnet(base, levels=5),
        "guoyww/animatediff-motion-adapter-v1-5-2": motion_adapter(),
    }
    for repo_id, model in repos.items():
        model.save_pretrained(folder / repo_id)
    return {repo_id: folder / repo_id for repo_id in repos}


def sd_controlnet(folder: Path) -> StableDiffusionControlNetPipeline:
    base = unet()
    pipe = StableDiffusionControlNetPipeline(
        vae=vae(), text_encoder=text_encoder(), tokenizer=tokenizer(folder), unet=base,
        controlnet=controlnet(base), scheduler=DDIMScheduler(clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sdxl_controlnet(folder: Path) -> StableDiffusionXLControlNetPipeline:
    # Two text encoders (their hidden states side by side) and SDXL's size/crop conditioning:
    # 6 time ids of 4 channels each plus the second encoder's pooled projection.
    base = unet(
        cross_attention_dim=2 * TEXT_WIDTH, addition_embed_type="text_time",
        addition_time_embed_dim=4, projection_class_embeddings_input_dim=6 * 4 + TEXT_WIDTH,
        use_linear_projection=True,
    )  # fmt: skip
    tok = tokenizer(folder)
    pipe = StableDiffusionXLControlNetPipeline(
        vae=vae(), text_encoder=text_encoder(), text_encoder_2=text_encoder(CLIPTextModelWithProjection),
        tokenizer=tok, tokenizer_2=tok, unet=base, controlnet=controlnet(base),
        scheduler=DDIMScheduler(clip_sample=False),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def animatediff_controlnet(folder: Path) -> AnimateDiffControlNetPipeline:
    base = unet()
    motion = motion_adapter()
    pipe = AnimateDiffControlNetPipeline(
        vae=vae(), text_encoder=text_encoder(), tokenizer=tokenizer(folder), unet=base,
        motion_adapter=motion, controlnet=controlnet(base),
        scheduler=DDIMScheduler(beta_schedule="linear", clip_sample=False),
        feature_extractor=None, image_encoder=None,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe
