"""The posted script with every lint finding fixed (a lint test case: must get no finding)."""
import torch
import torch.nn as nn


class Network(nn.Module):
    def __init__(self, image_size=150):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 16, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(nn.Conv2d(32, 64, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2))
        side = image_size
        for _ in range(3):
            side = (side - 2) // 2
        self.fc1 = nn.Linear(side * side * 64, 512)
        self.fc2 = nn.Linear(512, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(x)))
        out = out.view(out.size(0), -1)
        out = self.relu(self.fc1(out))
        return self.fc2(out)


def run(train_loader, val_loader, device, epochs=15):
    model = Network().to(device)
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    for epoch in range(epochs):
        model.train()
        correct, total, loss_sum = 0, 0, 0.0
        for samples, labels in train_loader:
            samples, labels = samples.to(device), labels.to(device).float()
            optimizer.zero_grad()
            output = model(samples).squeeze(1)
            loss = criterion(output, labels)
            loss.backward()
            optimizer.step()
            pred = (torch.sigmoid(output) >= 0.5).float()
            correct += (pred == labels).sum().item()
            total += len(labels)
            loss_sum += loss.item() * len(labels)
        scheduler.step()
        print(f"epoch {epoch + 1}: loss {loss_sum / total:.4f} acc {correct / total:.3f}")
        model.eval()
        val_correct, val_total = 0, 0
        with torch.no_grad():
            for samples, labels in val_loader:
                logits = model(samples.to(device)).squeeze(1)
                val_correct += ((logits >= 0).float() == labels.to(device)).sum().item()
                val_total += len(labels)
        print(f"val acc {val_correct / val_total:.3f}")
