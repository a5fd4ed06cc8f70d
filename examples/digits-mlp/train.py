"""digits-mlp: a small PyTorch MLP on scikit-learn's 8x8 digits (64 inputs, 10 classes).

mlpack calls build_model() and samples() directly (a module:function factory), so there is no file
to keep in sync; `python train.py` prints the accuracy. Training takes a few seconds on a CPU, seeded.
"""

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits

torch.manual_seed(0)


class DigitsMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, 64), torch.nn.ReLU(),
            torch.nn.Linear(64, 10),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(pixels), dim=-1)


def samples() -> np.ndarray:
    data = load_digits()
    return (data.data / 16.0).astype(np.float32)


@lru_cache(maxsize=1)
def build_model() -> DigitsMLP:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # bit-for-bit the same weights on every machine size
    x = torch.from_numpy(samples())
    y = torch.from_numpy(load_digits().target.astype(np.int64))
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.NLLLoss()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(torch.log(model(x) + 1e-9), y)
        loss.backward()
        opt.step()
    return model.eval()


if __name__ == "__main__":
    model = build_model()
    with torch.no_grad():
        acc = (model(torch.from_numpy(samples())).argmax(1).numpy() == load_digits().target).mean()
    print(f"digits-mlp: training accuracy {acc:.3f}")
