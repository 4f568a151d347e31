"""Small models for the command-line tests (imported by ``--class cli_models:TinyCNN``)."""
import torch
from torch import nn


class TinyCNN(nn.Module):
    """8x8 single-channel input -> 3 classes: conv, BatchNorm, ReLU, max-pool, linear."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(channels * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class SigmoidCNN(nn.Module):
    """Like :class:`TinyCNN` with a Sigmoid, which has no spiking equivalent."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.Sigmoid()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


class NeedsArgs(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc = nn.Linear(width, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))
