"""RoboticsWorldModel: an ensemble of probabilistic MLPs over proprioceptive state.

Input ``z = [state (S), visual embedding (V, optional)]`` and an action ``(A)``; the
network predicts a Gaussian over ``[delta z (S+V), reward (1)]``, a continuation
logit (or a small network reads it from the next state: ``continuation_from``) and a
safety (cost) logit. Row ``b`` of any batch handed to :meth:`imagine`
is handled by ensemble member ``b % E`` for the whole horizon (trajectory sampling).
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from world_models.base import Rollout
from world_models.config import RoboticsConfig, ValueConfig
from world_models.ensemble import EnsembleMLP, Layers, ensemble_step, from_members, imagine_reference, to_members
from world_models.fast import fast_enabled, imagine_in_place
from world_models.normalizer import Normalizer
from world_models.training import (
    check_loss_weights,
    ema_update,
    optimisation_step,
    rare_event_bce,
    sparse_reward_error,
    td0_target,
    termination_bce,
)


class ModelBatch(NamedTuple):
    """Training transitions, one independent minibatch per member: leading ``(E, B)``."""

    obs: torch.Tensor  # (E, B, S+V)
    actions: torch.Tensor  # (E, B, A)
    rewards: torch.Tensor  # (E, B)
    costs: torch.Tensor  # (E, B)
    terminated: torch.Tensor  # (E, B) bool
    next_obs: torch.Tensor  # (E, B, S+V)


class StepPrediction(NamedTuple):
    """One imagined step for ``(E, M)`` rows."""

    mean: torch.Tensor  # (E, M, D) normalised [delta z, reward]
    logvar: torch.Tensor | None  # (E, M, D); None when not asked for
    continuation_logit: torch.Tensor  # (E, M)
    cost_logit: torch.Tensor  # (E, M)


CONTINUATION_SOURCES = ("transition", "next_state")
COST_HEADS = ("network", "linear")
COST_PRIOR_LOGIT = -4.6  # the linear cost head's initial bias: a step is costly with probability ~0.01
IMAGINATION_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}  # by config name
CONTINUATION_HIDDEN = 64  # width of the next-state continuation network: cheap beside the dynamics


class RoboticsWorldModel(nn.Module):
    """Ensemble dynamics, reward, continuation and safety model on state vectors."""

    def __init__(self, state_dim: int, action_dim: int, config: RoboticsConfig | None = None,
                 value: ValueConfig | None = None, *, discount: float = 0.99, embed_dim: int = 0,
                 logvar_bound_weight: float = 0.01) -> None:
        """``config``: the networks and their training (default :class:`RoboticsConfig`'s); ``value``: a
        terminal value when ``value.function`` (none when ``None``), with ``discount`` (the planner's).

        ``value.kind``: ``state``, a value ``V(z)`` learned by TD(0) on stored transitions; ``policy``,
        a deterministic policy ``pi(z)`` and twin ``Q(z, a)`` learned off-policy, terminal value
        ``min Q(z, pi(z))`` (see :meth:`critic_loss`, :meth:`actor_loss`; ``value.policy_imitation``:
        weight of the actor's pull towards the stored actions).
        ``config.sparse_reward_weight > 0`` adds a squared error on the reward mean to the Gaussian NLL in
        which transitions with a non-zero reward count ``1 + sparse_reward_weight`` times (see
        :func:`~world_models.training.sparse_reward_error`); 0 leaves the NLL alone.
        ``config.termination_weight``: terminal transitions count ``1 + termination_weight`` times in the
        continuation loss (:func:`~world_models.training.termination_bce`).
        ``config.continuation_from``: ``transition``, the continuation logit is an output of the dynamics
        network, read from ``(z, a)``; ``next_state``, a small network of its own reads it from the
        next latent, trained on the stored next states (an episode ends where the next state is
        out of bounds, as a fallen hopper's is), and imagination applies it to each imagined state.
        ``config.imagination_dtype``: the dtype (by name, :data:`IMAGINATION_DTYPES`) of the dynamics
        network's hidden-to-hidden products in imagination without gradients (planning); ``bfloat16``
        keeps about 3 significant digits. The input layer (raw states, the normaliser folded in), the
        output layer and the latents stay float32, so the error does not build up over the horizon;
        training never uses it."""
        config = RoboticsConfig() if config is None else config
        value_function = value is not None and value.function
        value = ValueConfig() if value is None else value
        ensemble_size, hidden_dim, num_layers = config.ensemble_size, config.hidden_dim, config.num_layers
        sparse_reward_weight, termination_weight = config.sparse_reward_weight, config.termination_weight
        value_kind, value_tau, policy_imitation = value.kind, value.tau, value.policy_imitation
        continuation_from, cost_head, costly_weight = config.continuation_from, config.cost_head, config.costly_weight
        if config.imagination_dtype not in IMAGINATION_DTYPES:
            raise ValueError(f"imagination_dtype must be one of {sorted(IMAGINATION_DTYPES)}, "
                             f"got {config.imagination_dtype!r}")
        imagination_dtype = IMAGINATION_DTYPES[config.imagination_dtype]
        super().__init__()
        self.imagination_dtype = imagination_dtype
        check_loss_weights(sparse_reward_weight=sparse_reward_weight, termination_weight=termination_weight,
                           policy_imitation=policy_imitation, costly_weight=costly_weight)
        self.sparse_reward_weight, self.termination_weight = sparse_reward_weight, termination_weight
        self.costly_weight = costly_weight
        self.policy_imitation = policy_imitation
        self.state_dim = state_dim + embed_dim  # z = [state, embedding]
        self.action_dim = action_dim
        self.ensemble_size = ensemble_size
        self.logvar_bound_weight = logvar_bound_weight
        self.target_dim = self.state_dim + 1  # delta z and reward
        self.net = EnsembleMLP(
            ensemble_size, self.state_dim + action_dim, 2 * self.target_dim + 2, hidden_dim, num_layers
        )
        self.max_logvar = nn.Parameter(torch.full((self.target_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.target_dim,), -10.0))
        self.input_norm = Normalizer(self.state_dim + action_dim)
        self.target_norm = Normalizer(self.target_dim)
        self.discount, self.value_tau = discount, value_tau
        if value_kind not in ("state", "policy"):
            raise ValueError(f"value_kind must be state or policy, got {value_kind!r}")
        if continuation_from not in CONTINUATION_SOURCES:
            raise ValueError(f"continuation_from must be transition or next_state, got {continuation_from!r}")
        # continuation logit of the next latent (continuation_from next_state); the dynamics network's
        # own continuation output is then neither trained nor read
        self.continuation_net: EnsembleMLP | None = None
        if continuation_from == "next_state":
            self.continuation_net = EnsembleMLP(1, self.state_dim, 1, CONTINUATION_HIDDEN, 2)
        if cost_head not in COST_HEADS:
            raise ValueError(f"cost_head must be network or linear, got {cost_head!r}")
        # cost logit, linear in the normalised (z, z_next) per member (cost_head linear); the dynamics
        # network's own cost output is then neither trained nor read
        self.cost_net: EnsembleMLP | None = None
        if cost_head == "linear":
            self.cost_net = EnsembleMLP(ensemble_size, 2 * self.state_dim, 1, hidden_dim, 0)
            with torch.no_grad():
                self.cost_net.last.bias.fill_(COST_PRIOR_LOGIT)
        self.value_net: EnsembleMLP | None = None
        self.value_target: EnsembleMLP | None = None
        self.actor: EnsembleMLP | None = None
        self.actor_target: EnsembleMLP | None = None
        self.critic: EnsembleMLP | None = None
        self.critic_target: EnsembleMLP | None = None
        if value_function and value_kind == "state":  # V(z) = u(z) / (1 - discount), u on the reward scale
            self.value_net = EnsembleMLP(1, self.state_dim, 1, hidden_dim, 2)
            self.value_target = copy.deepcopy(self.value_net).requires_grad_(False)
        elif value_function:  # pi(z) in [-1, 1]^A and twin Q(z, a) = u(z, a) / (1 - discount)
            self.actor = EnsembleMLP(1, self.state_dim, action_dim, hidden_dim, 2)
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
            self.critic = EnsembleMLP(2, self.state_dim + action_dim, 1, hidden_dim, 2)
            self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        trainable = [p for p in self.parameters() if p.requires_grad]
        # fused: one pass over all parameters (CPU and CUDA), a third of the for-loop's time here
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           fused=True)

    # ----------------------------------------------------------------- small pieces
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, S+V) -> (B, Z)``: the state is its own latent."""
        if obs.dim() != 2 or obs.shape[1] != self.state_dim:
            raise ValueError(f"encode expects (B, {self.state_dim}) observations, got {tuple(obs.shape)}")
        return obs.to(dtype=torch.float32)

    def predict(self, z: torch.Tensor, action: torch.Tensor, with_variance: bool = True) -> StepPrediction:
        """``z (E, M, Z)``, ``action (E, M, A)`` -> one step's normalised prediction.

        ``with_variance=False`` skips the bounded log-variance (imagination uses means only).
        """
        pred = self._predict_transition(z, action, with_variance)
        if self.continuation_net is None and self.cost_net is None:
            return pred
        z_next = self.next(z, pred)
        if self.continuation_net is not None:
            pred = pred._replace(continuation_logit=self.next_state_continuation_logit(z_next))
        if self.cost_net is not None:
            pred = pred._replace(cost_logit=self.linear_cost_logit(z, z_next))
        return pred

    def _predict_transition(self, z: torch.Tensor, action: torch.Tensor, with_variance: bool) -> StepPrediction:
        """The dynamics network's prediction alone, its own continuation output included."""
        return self._split(self.net(self.input_norm.normalize(torch.cat([z, action], dim=-1))), with_variance)

    def next_state_continuation_logit(self, z_next: torch.Tensor) -> torch.Tensor:
        """Continuation logit ``(...)`` of next latents ``(..., Z)`` (``continuation_from`` next_state)."""
        assert self.continuation_net is not None, "needs continuation_from='next_state'"
        rows = self._normalized_state(z_next.reshape(-1, self.state_dim))
        return self.continuation_net(rows[None])[0, :, 0].reshape(z_next.shape[:-1])

    def linear_cost_logit(self, z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        """Cost logit ``(E, M)`` of transitions ``z -> z_next`` (each ``(E, M, Z)``, row ``m`` of member ``e``
        read by member ``e``'s logistic regression; ``cost_head`` linear)."""
        assert self.cost_net is not None, "needs cost_head='linear'"
        e, m, _ = z.shape
        rows = torch.cat([self._normalized_state(z.reshape(e * m, -1)),
                          self._normalized_state(z_next.reshape(e * m, -1))], dim=-1)
        return self.cost_net(rows.reshape(e, m, -1))[..., 0]

    def _split(self, out: torch.Tensor, with_variance: bool) -> StepPrediction:
        """Network output ``(E, M, 2D + 2)`` = [mean, raw log-variance, continuation, cost] -> prediction."""
        d = self.target_dim
        logvar = None
        if with_variance:
            logvar = self.max_logvar - F.softplus(self.max_logvar - out[..., d : 2 * d])
            logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return StepPrediction(out[..., :d], logvar, out[..., 2 * d], out[..., 2 * d + 1])

    def next(self, z: torch.Tensor, pred: StepPrediction) -> torch.Tensor:
        """Mean next latent ``(E, M, Z)`` from the current one and a prediction."""
        return z + self.target_norm.denormalize(pred.mean)[..., :-1]

    def reward(self, pred: StepPrediction) -> torch.Tensor:
        """Mean predicted reward ``(E, M)``."""
        return self.target_norm.denormalize(pred.mean)[..., -1]

    def continuation(self, pred: StepPrediction) -> torch.Tensor:
        """Probability ``(E, M)`` that the episode goes on after the step."""
        return torch.sigmoid(pred.continuation_logit)

    def value(self, z: torch.Tensor, net: EnsembleMLP | None = None) -> torch.Tensor:
        """Terminal value ``(B,)`` of latents ``(B, Z)`` (discounted return of the data's behaviour)."""
        net = self.value_net if net is None else net
        assert net is not None, "value() needs value_function=True"
        return net(self._normalized_state(z)[None])[0, :, 0] / (1.0 - self.discount)

    def _normalized_state(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, Z)`` scaled by the state part of the input normaliser (the value and policy nets' input)."""
        return (z - self.input_norm.mean[: self.state_dim]) / self.input_norm.std[: self.state_dim]

    def policy(self, z: torch.Tensor, net: EnsembleMLP | None = None) -> torch.Tensor:
        """The learned policy's action ``(B, A)`` in ``[-1, 1]`` for latents ``(B, Z)`` (``value_kind`` policy)."""
        net = self.actor if net is None else net
        assert net is not None, "policy() needs value_kind='policy'"
        return torch.tanh(net(self._normalized_state(z)[None])[0])

    def q_values(self, z: torch.Tensor, action: torch.Tensor, net: EnsembleMLP | None = None) -> torch.Tensor:
        """Both critics' ``Q(z, a)`` ``(2, B)`` for latents ``(B, Z)`` and actions ``(B, A)``, in return units."""
        net = self.critic if net is None else net
        assert net is not None, "q_values() needs value_kind='policy'"
        x = self.input_norm.normalize(torch.cat([z, action], dim=-1))
        return net(x.expand(2, *x.shape))[..., 0] / (1.0 - self.discount)

    def terminal_value(self, z: torch.Tensor) -> torch.Tensor | None:
        """The value ``(B,)`` added after the planning horizon to latents ``(B, Z)``; ``None`` without one."""
        if self.value_net is not None:
            return self.value(z)
        if self.actor is not None:
            return self.q_values(z, self.policy(z)).amin(dim=0)
        return None

    @torch.no_grad()
    def propose(self, z0: torch.Tensor, horizon: int, count: int, noise: float,
                generator: torch.Generator) -> torch.Tensor:
        """Action sequences ``(B, count, H, A)`` from rolling the learned policy through the model from
        ``z0 (B, Z)``: the ensemble's mean next latent after each action. Sequence 0 of each problem is
        the policy's own; the others add Gaussian noise of std ``noise`` (from ``generator``) to every
        action, clamped to ``[-1, 1]``."""
        batch = z0.shape[0]
        z = z0.repeat_interleave(count, dim=0)  # (B * count, Z), row b * count + k
        eps = torch.randn((horizon, batch, count, self.action_dim), generator=generator,
                          device=generator.device).to(z0)
        eps[:, :, 0] = 0.0
        layers = self._imagination_layers()
        members = (self.ensemble_size, batch * count)
        actions = []
        for t in range(horizon):
            a = (self.policy(z) + noise * eps[t].reshape(batch * count, -1)).clamp(-1.0, 1.0)
            actions.append(a)
            out = ensemble_step(z.expand(*members, -1), a.expand(*members, -1), layers)  # (E, B * count, Z + 3)
            z = z + out[..., : self.state_dim].mean(dim=0)
        return torch.stack(actions, dim=1).reshape(batch, count, horizon, self.action_dim)

    def safety(self, pred: StepPrediction) -> torch.Tensor:
        """Probability ``(E, M)`` that the step is unsafe (incurs cost)."""
        return torch.sigmoid(pred.cost_logit)

    # ----------------------------------------------------------------- imagination
    def imagine(self, z0: torch.Tensor, actions: torch.Tensor) -> Rollout:
        """``z0 (B, Z)``, ``actions (H, B, A)`` -> Rollout of ``(H, B)`` tensors; ``B % E == 0``."""
        horizon, batch, _ = actions.shape
        if z0.shape != (batch, self.state_dim) or actions.shape[2] != self.action_dim:
            raise ValueError(
                f"imagine expects z0 (B, {self.state_dim}) and actions (H, B, {self.action_dim}); "
                f"got {tuple(z0.shape)} and {tuple(actions.shape)}"
            )
        layers = self._imagination_layers()
        if not torch.is_grad_enabled() and self.imagination_dtype != torch.float32:  # hidden-to-hidden layers only
            dtype = self.imagination_dtype
            layers = [layers[0], *((w.to(dtype), b.to(dtype)) for w, b in layers[1:-1]), layers[-1]]
        fast = fast_enabled() and not torch.is_grad_enabled()
        imagined = imagine_in_place if fast else imagine_reference
        heads, latents = imagined(z0, actions, layers)  # (H, B, 3), (H+1, B, Z)
        rewards = heads[..., 0]
        if self.continuation_net is None:
            continuation_logit = heads[..., 1]
        else:  # all imagined next states at once: (H, B)
            continuation_logit = self.next_state_continuation_logit(latents[1:])
        cost_logit = heads[..., 2]
        if self.cost_net is not None:  # row b is member b % E's, as in imagination: (H, B)
            pairs = [to_members(states.transpose(0, 1), self.ensemble_size) for states in (latents[:-1], latents[1:])]
            e, rows, h = pairs[0].shape[:3]  # (E, B / E, H, Z)
            logit = self.linear_cost_logit(*(x.reshape(e, rows * h, -1) for x in pairs))  # (E, B / E * H)
            cost_logit = from_members(logit.reshape(e, rows, h)).transpose(0, 1)
        return Rollout(
            rewards=rewards,
            costs=torch.sigmoid(cost_logit),
            continuation=torch.sigmoid(continuation_logit),
            latents=latents,
            disagreement=torch.zeros_like(rewards),
            terminal_value=self.terminal_value(latents[-1]),
        )

    def _imagination_layers(self) -> Layers:
        """The dynamics network as imagination runs it: ``(weight (E, in, out), bias (E, 1, out))`` per
        layer, the input normalisation folded into the first and the target de-normalisation into the
        last, which keeps only the columns imagination reads (see ``_fold_output_layer``)."""
        w_in, b_in = self._fold_input_layer()
        w_out, b_out = self._fold_output_layer()
        return [(w_in, b_in), *((layer.weight, layer.bias) for layer in self.net.hidden_after_first()),
                (w_out, b_out)]

    def _fold_output_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The output layer cut to what imagination reads, with the target de-normalisation folded in.

        Returns weights ``(E, hidden, Z + 3)`` and bias ``(E, 1, Z + 3)`` whose outputs are
        ``[delta z (Z), reward, continuation logit, cost logit]`` in data units: the same as
        ``next``, ``reward``, and the logits of ``continuation`` and ``safety`` (the
        log-variance columns are never computed).
        """
        last, d = self.net.last, self.target_dim
        keep = [*range(d), 2 * d, 2 * d + 1]
        scale = torch.cat([self.target_norm.std, torch.ones(2, device=self.target_norm.std.device)])
        shift = torch.cat([self.target_norm.mean, torch.zeros(2, device=self.target_norm.mean.device)])
        return last.weight[..., keep] * scale, last.bias[..., keep] * scale + shift

    def _fold_input_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The input layer with the input normalisation folded in: weights ``(E, Z + A, hidden)``
        and bias ``(E, 1, hidden)`` such that ``first(norm(x)) = x @ W + b`` for raw ``x = [z, a]``."""
        first = self.net.first
        weight = first.weight / self.input_norm.std[None, :, None]  # (E, Z+A, hidden)
        bias = first.bias - torch.einsum("i,eih->eh", self.input_norm.mean, weight)[:, None]  # (E, 1, hidden)
        return weight, bias

    # ----------------------------------------------------------------- training
    def fit_normalizers(
        self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor
    ) -> None:
        """Set input and target statistics from all stored data: ``(B, Z)``, ``(B, A)``, ``(B,)``, ``(B, Z)``."""
        self.input_norm.fit(torch.cat([obs, actions], dim=-1))
        self.target_norm.fit(torch.cat([next_obs - obs, rewards[:, None]], dim=-1))

    def loss(
        self, batch: ModelBatch, value_batch: ModelBatch | None = None, target_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Gaussian NLL on normalised targets + continuation and safety BCE; ``(E, B)`` batch.

        The value function (if any) learns from ``value_batch`` when given, else from ``batch``;
        ``target_noise`` is for :meth:`critic_loss`.
        """
        pred = self._predict_transition(batch.obs, batch.actions, with_variance=True)
        target = self.target_norm.normalize(
            torch.cat([batch.next_obs - batch.obs, batch.rewards[..., None]], dim=-1)
        )
        sq_err = (pred.mean - target) ** 2
        assert pred.logvar is not None
        nll = (sq_err * torch.exp(-pred.logvar) + pred.logvar).mean()
        bound = self.logvar_bound_weight * (self.max_logvar.sum() - self.min_logvar.sum())
        # from the stored next state (not the predicted one): the network learns where episodes end
        cont_logit = pred.continuation_logit if self.continuation_net is None \
            else self.next_state_continuation_logit(batch.next_obs)
        cont_bce = termination_bce(cont_logit, batch.terminated, self.termination_weight)
        cost_logit = pred.cost_logit if self.cost_net is None \
            else self.linear_cost_logit(batch.obs, batch.next_obs)  # from the stored next state, as continuation
        cost_bce = rare_event_bce(cost_logit, batch.costs > 0, self.costly_weight)
        total = nll + bound + cont_bce + cost_bce
        if self.sparse_reward_weight:
            # the NLL alone explains a rare reward as noise (a wide variance) and predicts ~0 everywhere
            total = total + sparse_reward_error(pred.mean[..., -1], target[..., -1], batch.rewards,
                                                self.sparse_reward_weight)
        value_batch = batch if value_batch is None else value_batch
        value_terms: dict[str, torch.Tensor] = {}
        if self.value_net is not None:
            value_terms["world_model/value_loss"] = self.value_loss(value_batch)
        elif self.actor is not None:
            value_terms["world_model/critic_loss"] = self.critic_loss(value_batch, target_noise)
            value_terms["world_model/actor_loss"] = self.actor_loss(value_batch)  # minus the policy's Q1, reward scale
        if value_terms:
            total = total + sum(value_terms.values())  # (critic + actor): one term added to the model's
        reward_std = self.target_norm.std[-1]
        metrics = {
            "world_model/loss": total.item(),
            "world_model/nll": nll.item(),
            "world_model/state_mse": sq_err[..., :-1].mean().item(),
            "world_model/reward_mse": (sq_err[..., -1].mean() * reward_std**2).item(),
            "world_model/continuation_bce": cont_bce.item(),
            "safety/cost_bce": cost_bce.item(),
        }
        metrics.update({key: term.item() for key, term in value_terms.items()})
        return total, metrics

    def value_loss(self, batch: ModelBatch) -> torch.Tensor:
        """TD(0) on stored transitions against the EMA target (bootstraps through truncation)."""
        assert self.value_target is not None
        obs, next_obs = batch.obs.flatten(0, 1), batch.next_obs.flatten(0, 1)
        scale = 1.0 - self.discount
        with torch.no_grad():
            target = td0_target(batch.rewards.flatten(), batch.terminated.flatten(),
                                self.value(next_obs, self.value_target), self.discount)
        return F.mse_loss(scale * self.value(obs), target)

    def critic_loss(self, batch: ModelBatch, target_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Both critics' squared TD(0) error on stored transitions (reward scale, ``value_kind`` policy).

        The critics regress ``(1 - discount) r + discount (1 - terminated) min Q'(z', pi'(z') + noise)``
        with the EMA targets ``Q'`` and ``pi'``: TD3's clipped double Q, and ``target_noise (E, B, A)``,
        if given, smooths the target policy's actions.
        """
        assert self.actor_target is not None and self.critic_target is not None
        obs, next_obs = batch.obs.flatten(0, 1), batch.next_obs.flatten(0, 1)
        with torch.no_grad():
            next_action = self.policy(next_obs, self.actor_target)
            if target_noise is not None:
                next_action = (next_action + target_noise.flatten(0, 1)).clamp(-1.0, 1.0)
            next_q = self.q_values(next_obs, next_action, self.critic_target).amin(0)
            target = td0_target(batch.rewards.flatten(), batch.terminated.flatten(), next_q, self.discount)
        scale = 1.0 - self.discount
        return F.mse_loss(scale * self.q_values(obs, batch.actions.flatten(0, 1)), target.expand(2, -1))

    def actor_loss(self, batch: ModelBatch) -> torch.Tensor:
        """``-(1 - discount) Q1(z, pi(z))`` on the stored states; its gradient reaches the actor only.

        With ``policy_imitation`` ``w > 0`` (TD3+BC's form): ``-Q1(z, pi(z)) / mean |Q1| + w mse(pi(z), a)``,
        ``a`` the stored actions. The planner, not the actor, chose those actions, so the critics have
        seen actions near them only; an actor free to leave them queries the critics where they are
        untrained, and their targets ``min Q'(z', pi'(z'))`` inherit those errors (over-estimation).
        ``w = 0.4`` is TD3+BC's ``alpha = 2.5``.
        """
        assert self.critic is not None
        obs = batch.obs.flatten(0, 1)
        self.critic.requires_grad_(False)
        try:
            action = self.policy(obs)
            q = (1.0 - self.discount) * self.q_values(obs, action)[0]
            if not self.policy_imitation:
                return -q.mean()
            imitation = F.mse_loss(action, batch.actions.flatten(0, 1))
            return -q.mean() / q.abs().mean().detach().clamp_min(1e-8) + self.policy_imitation * imitation
        finally:
            self.critic.requires_grad_(True)

    def update(
        self, batch: ModelBatch, value_batch: ModelBatch | None = None, target_noise: torch.Tensor | None = None
    ) -> dict[str, float]:
        """One optimisation step on an ``(E, B)`` batch (``value_batch``, ``target_noise``: see :meth:`loss`);
        returns metrics."""
        self.train()
        total, metrics = self.loss(batch, value_batch, target_noise)
        optimisation_step(self.optimizer, total, metrics, "world-model")
        if self.value_net is not None and self.value_target is not None:
            ema_update(self.value_target, self.value_net, self.value_tau)
        if self.actor is not None and self.actor_target is not None:
            assert self.critic is not None and self.critic_target is not None
            ema_update(self.actor_target, self.actor, self.value_tau)
            ema_update(self.critic_target, self.critic, self.value_tau)
        self.eval()
        return metrics
