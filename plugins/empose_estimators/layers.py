"""Building blocks of the EM-POSE networks (reference §7.2).

Module and attribute names are part of the checkpoint format: they reproduce the original's
`state_dict` keys (`input_to_hidden`, `batch_norm`, `activation_fn`, `hidden_to_output`,
`hidden_layers.<b>.layers.<i>`, `lstm`, `to_init_state_h/c`, `dense`), so released weights load as is.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


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
    original's bugs (h and c swapped, batch size 1, bidirectional shapes; reference §13 item 13), so
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
        return self.lstm(x, state)
