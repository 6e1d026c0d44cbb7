"""Building blocks of the EM-POSE networks (docs/method.md §7.2).

Module and attribute names are part of the checkpoint format: they reproduce the original's
`state_dict` keys (`input_to_hidden`, `batch_norm`, `activation_fn`, `hidden_to_output`,
`hidden_layers.<b>.layers.<i>`, `lstm`, `to_init_state_h/c`, `dense`), so released weights load as is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

NATIVE_LSTM_FRAMES = 64  # B*T up to which the CPU LSTM runs PyTorch's kernel instead of oneDNN's


def _batch_norm(width: int) -> nn.BatchNorm1d:
    """BatchNorm1d with gamma ~ U(0, 1) and beta = 0, the original's initialisation."""
    bn = nn.BatchNorm1d(width)
    nn.init.uniform_(bn.weight, 0.0, 1.0)
    return bn


class DenseBlock(nn.Module):
    """[Linear -> BatchNorm (optional) -> PReLU -> Dropout] x 2, optionally `x + block(x)`.

    The Dropout modules are kept even at p = 0 because they take part in the `layers.<i>` numbering."""

    def __init__(self, width: int, dropout: float, skip: bool, batch_norm: bool):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(nn.Linear(width, width))
            if batch_norm:
                layers.append(_batch_norm(width))
            layers += [nn.PReLU(), nn.Dropout(dropout)]
        self.layers = nn.Sequential(*layers)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.skip else y


class MLP(nn.Module):
    """Linear(in, H) -> BatchNorm or identity -> PReLU -> Dropout -> `blocks` dense blocks -> Linear(H, out).

    Accepts any leading dimensions; BatchNorm pools them all (frames and batch entries), as the
    original does on its flattened (N*F, in) inputs."""

    def __init__(self, input_size: int, output_size: int, hidden: int, blocks: int, dropout: float,
                 skip: bool, batch_norm: bool):  # fmt: skip
        super().__init__()
        self.input_to_hidden = nn.Linear(input_size, hidden)
        self.batch_norm = _batch_norm(hidden) if batch_norm else nn.Identity()
        self.activation_fn = nn.PReLU()
        self.dropout = nn.Dropout(dropout)
        self.hidden_to_output = nn.Linear(hidden, output_size)
        self.hidden_layers = nn.ModuleList(DenseBlock(hidden, dropout, skip, batch_norm) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = self.dropout(self.activation_fn(self.batch_norm(self.input_to_hidden(x.reshape(-1, x.shape[-1])))))
        for block in self.hidden_layers:
            h = block(h)
        return self.hidden_to_output(h).reshape(*lead, -1)


class ResidualBlock(nn.Module):
    """y = ReLU(Linear(x) + x) (the ResNet's block)."""

    def __init__(self, width: int):
        super().__init__()
        self.dense = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.dense(x) + x)


class RNNLayer(nn.Module):
    """Input dropout -> LSTM (batch first), with an optional learned initial state.

    The learned initial state maps the first frame's input through `to_init_state_h` / `to_init_state_c`
    (Linear(in, layers*directions*hidden), reshaped to (layers*directions, B, hidden)). It fixes the
    original's bugs (h and c swapped, batch size 1, bidirectional shapes; docs/method.md §13 item 13), so
    weights trained with the original's learned state would not behave the same; no released model
    uses it."""

    def __init__(self, input_size: int, hidden: int, layers: int, bidirectional: bool = False,
                 dropout: float = 0.0, learn_init_state: bool = False):  # fmt: skip
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.n_states = layers * (2 if bidirectional else 1)
        if learn_init_state:
            self.to_init_state_h = nn.Linear(input_size, self.n_states * hidden)
            self.to_init_state_c = nn.Linear(input_size, self.n_states * hidden)
        self.learn_init_state = learn_init_state

    @property
    def output_size(self) -> int:
        return self.lstm.hidden_size * (2 if self.lstm.bidirectional else 1)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Zero state (None) or the learned one from the first frame of `x` (B, T, in)."""
        if not self.learn_init_state:
            return None
        b, hidden = x.shape[0], self.lstm.hidden_size
        h = self.to_init_state_h(x[:, 0]).view(b, self.n_states, hidden).transpose(0, 1).contiguous()
        c = self.to_init_state_c(x[:, 0]).view(b, self.n_states, hidden).transpose(0, 1).contiguous()
        return h, c

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                state: tuple[torch.Tensor, torch.Tensor] | None = None):  # fmt: skip
        """Outputs (B, T, directions*hidden) and the final (h, c). With `lengths` shorter than T the
        sequences are packed (as the original does), so padded outputs are zero and a bidirectional
        LSTM starts its backward pass at each sequence's true end. `state=None` starts a sequence."""
        if state is None:
            state = self.initial_state(x)
        x = self.input_dropout(x)
        t = x.shape[1]
        if lengths is not None and bool((lengths < t).any()):
            packed = pack_padded_sequence(x, lengths.cpu().long(), batch_first=True, enforce_sorted=False)
            out, new_state = self.lstm(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
            return out, new_state
        if torch.compiler.is_compiling() and not self.lstm.bidirectional:
            return self._cells(x, state)
        # oneDNN's LSTM costs ~10x PyTorch's own kernel on a few frames (streaming), and wins on long inputs
        if x.device.type != "cpu" or x.shape[0] * t > NATIVE_LSTM_FRAMES:
            return self.lstm(x, state)
        before = torch.backends.mkldnn.set_flags(False, None, None, None)[0]  # only the "enabled" flag
        try:
            return self.lstm(x, state)
        finally:
            torch.backends.mkldnn.set_flags(before, None, None, None)

    def _cells(self, x: torch.Tensor, state):
        """The LSTM (unidirectional, eval) as explicit cell steps, what torch.compile fuses: per layer one
        input matmul for all frames, then per frame one recurrent matmul and the gate pointwise ops."""
        lstm = self.lstm
        b, t, hidden = x.shape[0], x.shape[1], lstm.hidden_size
        if state is None:
            state = (x.new_zeros(lstm.num_layers, b, hidden),) * 2
        hs, cs, out = [], [], x
        for layer in range(lstm.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
            pre = out @ w_ih.T
            if lstm.bias:
                pre = pre + getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            h, c, steps = state[0][layer], state[1][layer], []
            for i in range(t):
                gate_i, gate_f, gate_g, gate_o = (pre[:, i] + h @ w_hh.T).chunk(4, dim=-1)
                c = torch.sigmoid(gate_f) * c + torch.sigmoid(gate_i) * torch.tanh(gate_g)
                h = torch.sigmoid(gate_o) * torch.tanh(c)
                steps.append(h)
            out = torch.stack(steps, dim=1)
            hs.append(h)
            cs.append(c)
        return out, (torch.stack(hs), torch.stack(cs))


class FoldedMLPs:
    """Eval-mode inference of MLPs of one layout that read the same input, in a few large kernels.

    Each BatchNorm is folded into the Linear before it and the nets' layers are stacked, so a layer of
    every net is one batched matmul (`baddbmm`); the narrower outputs are zero-padded and cut. Equal to
    the modules in eval mode up to float rounding. Built from the weights as they are; `cached` rebuilds
    it whenever a weight or running statistic changed (optimiser step, `load_state_dict`, `.to()`)."""

    def __init__(self, mlps: list[MLP]):
        self.sizes = [m.hidden_to_output.out_features for m in mlps]
        width = max(self.sizes)
        groups = [_folded_layers(m, width) for m in mlps]
        self.layers = []
        for layer in zip(*groups):
            w = torch.stack([w for w, _, _, _ in layer])  # (M, in, out)
            b = torch.stack([b for _, b, _, _ in layer])[:, None]  # (M, 1, out)
            a = None if layer[0][2] is None else torch.stack([a for _, _, a, _ in layer]).reshape(-1, 1, 1)
            self.layers.append((w, b, a, layer[0][3]))

    @classmethod
    def cached(cls, mlps: list[MLP], slot: list) -> "FoldedMLPs":
        """The plan for `mlps`, reusing the one in `slot` ([key, plan]) while its weights are unchanged."""
        key = tuple((t.data_ptr(), t._version) for m in mlps for t in (*m.parameters(), *m.buffers()))
        if not slot or slot[0] != key:
            slot[:] = [key, cls(mlps)]
        return slot[1]

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(len(self.sizes), -1, -1)
        skip = None
        for w, b, a, mark in self.layers:
            if mark == "open":
                skip = h
            h = torch.baddbmm(b, h, w)
            if a is not None:
                h = torch.where(h > 0, h, h * a)
            if mark == "close" and skip is not None:
                h = h + skip
        return [h[i, :, :n].reshape(*lead, n) for i, n in enumerate(self.sizes)]


def _folded_layers(mlp: MLP, width: int) -> list:
    """(W^T (in, out), bias (out,), PReLU slope or None, skip mark) per Linear of `mlp`, BatchNorm folded in;
    the output layer padded to `width`. Skip marks: "open" where a residual block starts, "close" where it ends."""

    def fold(linear: nn.Linear, bn: nn.Module):
        w, b = linear.weight.detach(), linear.bias.detach()
        if isinstance(bn, nn.BatchNorm1d):
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            w, b = w * scale[:, None], (b - bn.running_mean) * scale + bn.bias.detach()
        return w.t().contiguous(), b

    def prelu(act: nn.PReLU) -> torch.Tensor:
        if act.weight.numel() != 1:
            raise ValueError("FoldedMLPs supports single-slope PReLU only")
        return act.weight.detach().reshape(())

    out = [(*fold(mlp.input_to_hidden, mlp.batch_norm), prelu(mlp.activation_fn), None)]
    for block in mlp.hidden_layers:
        mods = list(block.layers)
        linears = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
        for n, i in enumerate(linears):
            bn = mods[i + 1] if isinstance(mods[i + 1], nn.BatchNorm1d) else None
            act = next(m for m in mods[i + 1 :] if isinstance(m, nn.PReLU))
            mark = ("open" if n == 0 else "close") if block.skip else None
            out.append((*fold(mods[i], bn), prelu(act), mark))
    w, b = fold(mlp.hidden_to_output, None)
    pad = width - w.shape[1]
    out.append((nn.functional.pad(w, (0, pad)), nn.functional.pad(b, (0, pad)), None, None))
    return out
