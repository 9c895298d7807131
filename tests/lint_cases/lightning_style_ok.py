"""A correct binary script in another style: logits thresholded at 0, a per-step cosine schedule
sized in steps, validation in a decorated function (must get no error or warning)."""
import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.body(x))


def fit(train_loader, val_loader, epochs):
    model = Head()
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            logits = model(x).squeeze(1)
            loss = loss_fn(logits, y.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        print(validate(model, val_loader))


@torch.no_grad()
def validate(model, val_loader):
    model.eval()
    hits = n = 0
    for x, y in val_loader:
        probs = torch.sigmoid(model(x).squeeze(1))
        hits += ((probs > 0.5).long() == y).sum().item()
        n += len(y)
    return hits / n
