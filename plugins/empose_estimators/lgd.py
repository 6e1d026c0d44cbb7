"""Learned gradient descent ("LGD", called IEF in the original), optionally initialised by an LSTM
("LGD RNN", the paper's best model); docs/method.md §7.5.

An initial estimate (theta_0, beta_0) comes from an LSTM with two Linear heads (`rnn_init`) or from
two frame-wise MLPs. K update steps (one pair of update MLPs shared by all steps) then refine it:

    z_i = [x, theta_i, beta_i (, dE/dtheta_i, dE/dbeta_i)]      (estimates detached)
    theta_{i+1} = theta_i + step_size * pose_net_iter(z_i)
    beta_{i+1}  = beta_i  + step_size * shape_net_iter(z_i)

where E is the sensor-reconstruction error (docs/method.md §8.1) between the sensors the network saw and
the forward model g(theta, beta; offsets) = `body_model.sensor_frames` at the estimator's own sensor
sites, with the batch's offsets (zero translation / identity rotation when there are none). The
gradient rows are multiplied by B*T as in the original, so each is the per-frame gradient (times T/L
for a sequence of true length L padded to T). Frames with an invalid reading of any sensor in the
data contribute zero: the original's mask over all 12 sensors when the data carries all 12 (as the
recipes from `empose import-checkpoint` do), over the estimator's own sensors when it carries only those.

The gradient input is dE/dframes in closed form pulled back by the body model's `sensor_frames_vjp`
(closed form for the SMPL-H-layout models, autograd by default), w.r.t. the estimate only: it never
touches the weights' `.grad`, and it works under `torch.no_grad()`. In eval-mode inference the update
nets run as one folded plan (`layers.FoldedMLPs`). `reference = True` keeps the autograd/module path the
fast paths are tested against. `original_gradient_leak: true` reproduces the original instead (reference
§8.3, §13 item 8): in training, dE/dweights of every iterate but the last is accumulated into the
weights' `.grad` during the forward pass, an extra objective sum_{i<K} R_i that the published training
optimised. It needs the usual order zero_grad -> forward -> backward -> step.

Prediction fields (besides the common ones of `empose_estimators.base`):
- `iterates`: the K+1 estimates as BodyPose (pose (B, T, J, 3), betas (B, T, K)), initial first, final
  last, attached to the graph so that losses on them train every network;
- `sensor_iterates`: per estimate, the forward model's (positions (B, T, S, 3), orientations
  (B, T, S, 3, 3)) where it was computed for the gradient input, else None (losses compute the rest).
"""

from __future__ import annotations

import torch
from torch import nn

from empose_estimators import schema
from empose_estimators.base import EMPoseEstimator, Inputs, average_over_time
from empose_estimators.layers import MLP, FoldedMLPs, RNNLayer
from empose_framework.interfaces import BodyPose
from empose_framework.primitives import sum_of_norms


class LGD(EMPoseEstimator):
    """Learned gradient descent with optional RNN initialiser (the paper's LGD / LGD RNN)."""

    params = schema.LGD
    loss_form = "l1"
    eval_chunk = 256  # the paper evaluates LGD in 256-frame chunks, state carried (§10.1)

    def __init__(self, *, hidden, blocks, iterations, step_size, use_gradient, average_shape, causal_shape_average,
                 rnn_init, rnn_hidden, rnn_layers, dropout, hidden_dropout, batch_norm, skip_connections, use_pos,
                 use_ori, original_gradient_leak, body_model, sensor_names):  # fmt: skip
        super().__init__()
        self._init_io(body_model, sensor_names, use_pos, use_ori)
        d, p, k = self.input_size, self.pose_size, self.n_betas

        def mlp(n_in, n_out):
            return MLP(n_in, n_out, hidden, blocks, hidden_dropout, skip_connections, batch_norm)

        if rnn_init:
            self.rnn = RNNLayer(d, rnn_hidden, rnn_layers, bidirectional=False, dropout=dropout)
            self.pose_net_init = nn.Linear(rnn_hidden, p)
            self.shape_net_init = nn.Linear(rnn_hidden, k)
        else:
            self.pose_net_init = mlp(d, p)
            self.shape_net_init = mlp(d, k)
        d_iter = d + p + k + ((p + k) if use_gradient else 0)
        self.pose_net_iter = mlp(d_iter, p)
        self.shape_net_iter = mlp(d_iter, k)
        self.rnn_init, self.iterations, self.step_size = rnn_init, iterations, step_size
        self.use_gradient, self.original_gradient_leak = use_gradient, original_gradient_leak
        self.average_shape, self.causal_shape_average = average_shape, causal_shape_average

    def _run(self, inp: Inputs, state, padded):
        state = state or {}
        n_est = self.iterations + 1
        avg_in = state.get("avg") or [None] * n_est
        avg_out = [None] * n_est
        if self.rnn_init:
            h, rnn_state = self.rnn(inp.x, inp.seq_len if padded else None, state.get("rnn"))
            theta, beta = self.pose_net_init(h), self.shape_net_init(h)
        else:
            rnn_state = None
            theta, beta = self.pose_net_init(inp.x), self.shape_net_init(inp.x)
        if self.average_shape:
            beta, avg_out[0] = average_over_time(beta, self.causal_shape_average, avg_in[0])

        leak = self.original_gradient_leak and self.training and torch.is_grad_enabled()
        iterates, sensor_iterates = [self._pose(theta, beta)], []
        update = self._update_nets()
        for i in range(self.iterations):
            z = [inp.x, theta.detach(), beta.detach()]
            if self.use_gradient:
                pos, ori, g_theta, g_beta = self._gradient_input(theta, beta, inp, leak)
                sensor_iterates.append((pos, ori))
                z += [g_theta, g_beta]
            else:
                sensor_iterates.append(None)
            z = torch.cat(z, dim=-1)
            d_theta, d_beta = update(z)
            if self.average_shape:
                d_beta, avg_out[i + 1] = average_over_time(d_beta, self.causal_shape_average, avg_in[i + 1])
            theta = theta + self.step_size * d_theta
            beta = beta + self.step_size * d_beta
            iterates.append(self._pose(theta, beta))
        sensor_iterates.append(None)
        prediction = self._prediction(inp, theta, beta, iterates=iterates, sensor_iterates=sensor_iterates)
        return prediction, {"rnn": rnn_state, "avg": avg_out}

    def _update_nets(self):
        """z -> (d_theta, d_beta): the folded plan of both update nets in eval-mode inference (no grad,
        not `reference`), the modules otherwise (also while a forward hook watches one of them)."""
        nets = [self.pose_net_iter, self.shape_net_iter]
        if (self.training or self.reference or torch.is_grad_enabled() or torch.compiler.is_compiling()
                or any(n._forward_hooks for n in nets)):  # fmt: skip
            return lambda z: (self.pose_net_iter(z), self.shape_net_iter(z))
        return FoldedMLPs.cached(nets, self._plans.setdefault("update", []))

    def _pose(self, theta: torch.Tensor, beta: torch.Tensor) -> BodyPose:
        return BodyPose(theta.reshape(*theta.shape[:2], self.n_joints, 3), beta)

    def _gradient_input(self, theta, beta, inp: Inputs, leak: bool):
        """Forward model at (theta, beta), and dE/dtheta, dE/dbeta scaled by B*T (per-frame rows):
        the closed-form dE/dframes pulled back by the body model's `sensor_frames_vjp` (which keeps the
        estimates' graph on the frames, for the losses). The leak and the `reference` path use autograd."""
        if leak or self.reference:
            return self._autograd_gradient_input(theta, beta, inp, leak)
        pos, ori, vjp = self.body_model.sensor_frames_vjp(self._pose(theta, beta), self.sensor_names, inp.offsets)
        g_theta, g_beta = vjp(*self._error_cotangents(pos.detach(), ori.detach(), inp))
        return pos, ori, g_theta.reshape(theta.shape), g_beta

    def _error_cotangents(self, pos: torch.Tensor, ori: torch.Tensor, inp: Inputs):
        """B*T times dE/dpos and dE/dori: on every kept frame T/L times the unit difference to the seen
        sensors (zero where the difference vanishes, as autograd's norm), zero elsewhere."""
        t = pos.shape[1]
        keep = inp.frame_mask[..., None, None]
        scale = (t / inp.seq_len.to(pos))[:, None, None, None]

        def unit(diff):  # dropped frames first, so that a NaN there stays out
            diff = torch.where(keep, diff, 0.0)
            norm = diff.norm(dim=-1, keepdim=True)
            return torch.where(norm > 0, diff / norm, 0.0) * scale

        d_pos = unit(pos - inp.seen.pos) if self.use_pos else torch.zeros_like(pos)
        d_ori = unit((ori - inp.seen.ori).flatten(-2)).view_as(ori) if self.use_ori else torch.zeros_like(ori)
        return d_pos, d_ori

    def _autograd_gradient_input(self, theta, beta, inp: Inputs, leak: bool):
        """`_gradient_input` by autograd through E (and, with the leak, into the weights' `.grad`).
        Estimates that carry a graph (training) are differentiated in place, keeping the graph for the
        losses; otherwise (no_grad, frozen nets) on detached copies under a local enable_grad."""
        b, t = theta.shape[:2]
        attached = theta.requires_grad or beta.requires_grad
        with torch.enable_grad():
            th = theta if theta.requires_grad else theta.detach().requires_grad_(True)
            be = beta if beta.requires_grad else beta.detach().clone().requires_grad_(True)
            pos, ori = self.body_model.sensor_frames(self._pose(th, be), self.sensor_names, inp.offsets)
            err = self.reconstruction_error(pos, ori, inp)
            weights = [w for w in self.parameters() if w.requires_grad] if leak else []
            grads = torch.autograd.grad(err, [th, be, *weights], retain_graph=attached, allow_unused=True)
        for w, g in zip(weights, grads[2:]):
            if g is not None:
                w.grad = g if w.grad is None else w.grad + g
        g_theta = grads[0] if grads[0] is not None else torch.zeros_like(theta)
        g_beta = grads[1] if grads[1] is not None else torch.zeros_like(beta)
        if not attached:
            pos, ori = pos.detach(), ori.detach()
        return pos, ori, g_theta * (b * t), g_beta * (b * t)

    def reconstruction_error(self, pos: torch.Tensor, ori: torch.Tensor, inp: Inputs) -> torch.Tensor:
        """E = sum-of-norms on positions + on flattened orientations (each only if the network sees that
        input) between the forward model and the sensors the network saw, over the masked frames."""
        err = pos.new_zeros(())
        if self.use_pos:
            err = err + sum_of_norms(pos, inp.seen.pos, inp.seq_len, inp.frame_mask)
        if self.use_ori:
            err = err + sum_of_norms(ori.flatten(-2), inp.seen.ori.flatten(-2), inp.seq_len, inp.frame_mask)
        return err
